/* tagmask.c — the tag-id constraint for the answer markup (see tagmask.h). */
#include "assist/tagmask.h"

#include "core/error.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

enum { TV_CONTROL = 1, TV_HAS_LT = 2 };

struct tagmask_vocab {
    int n;
    uint32_t *off;  /* (n + 1) into bytes */
    uint8_t *flags; /* (n) TV_* */
    char *bytes;
    atomic_int refs; /* the creator's and one per tagmask */
};

/* The openings the automaton constrains; the last one takes several ids. */
static const char *const opens[] = {"product id=\"", "price id=\"", "stock id=\"", "delivery id=\"",
                                    "compare ids=\""};
#define N_OPENS 5
#define COMPARE_OPEN 4
#define MAX_COMPARE 4 /* MARKUP_MAX_IDS */

enum mode { M_TEXT, M_OPEN, M_ID, M_CLOSE };

struct tm_state {
    uint8_t mode;
    uint8_t olen, oalive; /* M_OPEN: bytes matched after '<', openings still possible */
    uint8_t compare, n_done, cl;
    uint8_t cur_len;      /* M_ID: bytes of the current id */
    uint32_t alive;       /* M_ID: ids that the current bytes are a prefix of */
};

struct tagmask {
    const struct tagmask_vocab *v;
    char ids[TAGMASK_MAX_IDS][65];
    uint8_t id_len[TAGMASK_MAX_IDS];
    size_t n_ids;
    uint32_t all;
    struct tm_state st;
    lm_mask_fn pre;
    void *pre_ctx;
    atomic_int refs;
};

static void vocab_unref(struct tagmask_vocab *v)
{
    if (!v || atomic_fetch_sub(&v->refs, 1) != 1)
        return;
    free(v->off);
    free(v->flags);
    free(v->bytes);
    free(v);
}

int tagmask_vocab_new(struct tagmask_vocab **out, const struct tok *t)
{
    struct tagmask_vocab *v = calloc(1, sizeof(*v));
    if (!v)
        return AISLE_ENOMEM;
    atomic_init(&v->refs, 1);
    v->n = (int)tok_n_vocab(t);
    size_t total = 0;
    for (int i = 0; i < v->n; i++) {
        const char *p;
        size_t len = 0;
        if (tok_piece(t, i, 0, &p, &len) == 0)
            total += len;
    }
    v->off = malloc(((size_t)v->n + 1) * sizeof(*v->off));
    v->flags = calloc((size_t)v->n, 1);
    v->bytes = malloc(total ? total : 1);
    if (!v->off || !v->flags || !v->bytes || total > UINT32_MAX) {
        vocab_unref(v);
        return AISLE_ENOMEM;
    }
    size_t at = 0;
    for (int i = 0; i < v->n; i++) {
        const char *p = NULL;
        size_t len = 0;
        v->off[i] = (uint32_t)at;
        enum tok_type ty = tok_type_of(t, i);
        if (tok_piece(t, i, 0, &p, &len) || len == 0 || ty == TOK_TYPE_CONTROL || ty == TOK_TYPE_UNKNOWN) {
            v->flags[i] = TV_CONTROL; /* writes no text: fine in text, never inside a tag */
            continue;
        }
        memcpy(v->bytes + at, p, len);
        if (memchr(p, '<', len))
            v->flags[i] |= TV_HAS_LT;
        at += len;
    }
    v->off[v->n] = (uint32_t)at;
    *out = v;
    return 0;
}

void tagmask_vocab_free(struct tagmask_vocab *v)
{
    vocab_unref(v); /* masks still held by the scheduler keep it */
}

int tagmask_new(struct tagmask **out, const struct tagmask_vocab *v, const char *const *ids, size_t n)
{
    struct tagmask *m = calloc(1, sizeof(*m));
    if (!m)
        return AISLE_ENOMEM;
    m->v = v;
    atomic_fetch_add(&((struct tagmask_vocab *)v)->refs, 1);
    for (size_t i = 0; i < n && m->n_ids < TAGMASK_MAX_IDS; i++) {
        size_t len = strlen(ids[i]);
        if (len == 0 || len > 64)
            continue;
        memcpy(m->ids[m->n_ids], ids[i], len + 1);
        m->id_len[m->n_ids] = (uint8_t)len;
        m->all |= 1u << m->n_ids;
        m->n_ids++;
    }
    atomic_init(&m->refs, 1);
    *out = m;
    return 0;
}

void tagmask_set_pre(struct tagmask *m, lm_mask_fn pre, void *pre_ctx)
{
    m->pre = pre;
    m->pre_ctx = pre_ctx;
}

void tagmask_ref(struct tagmask *m)
{
    atomic_fetch_add(&m->refs, 1);
}

void tagmask_unref(struct tagmask *m)
{
    if (m && atomic_fetch_sub(&m->refs, 1) == 1) {
        vocab_unref((struct tagmask_vocab *)m->v);
        free(m);
    }
}

void tagmask_release(void *ctx)
{
    tagmask_unref(ctx);
}

int tagmask_in_tag(const struct tagmask *m)
{
    return m->st.mode != M_TEXT;
}

/* Is the current id one of the ids, whole? */
static int id_complete(const struct tagmask *m, const struct tm_state *s)
{
    for (size_t i = 0; i < m->n_ids; i++)
        if ((s->alive >> i & 1u) && m->id_len[i] == s->cur_len)
            return 1;
    return 0;
}

static void open_start(struct tm_state *s)
{
    s->mode = M_OPEN;
    s->olen = 0;
    s->oalive = (1u << N_OPENS) - 1;
}

/* One byte through the automaton: 0, or -1 when it breaks a tag. */
static int step(const struct tagmask *m, struct tm_state *s, unsigned char c)
{
    switch (s->mode) {
    case M_TEXT:
        if (c == '<')
            open_start(s);
        return 0;
    case M_OPEN: {
        uint8_t alive = 0, whole = N_OPENS;
        for (int k = 0; k < N_OPENS; k++)
            if ((s->oalive >> k & 1u) && strlen(opens[k]) > s->olen && (unsigned char)opens[k][s->olen] == c) {
                alive |= (uint8_t)(1u << k);
                if (strlen(opens[k]) == (size_t)s->olen + 1)
                    whole = (uint8_t)k;
            }
        if (!alive) { /* not a tag this automaton constrains: the markup parser judges it */
            s->mode = M_TEXT;
            if (c == '<')
                open_start(s);
            return 0;
        }
        s->olen++;
        s->oalive = alive;
        if (whole < N_OPENS) {
            if (!m->n_ids)
                return -1; /* no product to name: the tag cannot be opened */
            s->mode = M_ID;
            s->compare = whole == COMPARE_OPEN;
            s->n_done = 0;
            s->cur_len = 0;
            s->alive = m->all;
        }
        return 0;
    }
    case M_ID: {
        if (c == '"') {
            if (!id_complete(m, s) || (s->compare && s->n_done + 1 < 2))
                return -1;
            s->mode = M_CLOSE;
            s->cl = 0;
            return 0;
        }
        if (s->compare && c == ',') {
            if (!id_complete(m, s) || s->n_done + 1 >= MAX_COMPARE)
                return -1;
            s->n_done++;
            s->cur_len = 0;
            s->alive = m->all;
            return 0;
        }
        uint32_t alive = 0;
        for (size_t i = 0; i < m->n_ids; i++)
            if ((s->alive >> i & 1u) && m->id_len[i] > s->cur_len && (unsigned char)m->ids[i][s->cur_len] == c)
                alive |= 1u << i;
        if (!alive)
            return -1;
        s->alive = alive;
        s->cur_len++;
        return 0;
    }
    default: /* M_CLOSE */
        if ("/>"[s->cl] != c)
            return -1;
        if (++s->cl == 2)
            s->mode = M_TEXT;
        return 0;
    }
}

/* Would token tok keep the automaton (from s) valid? */
static int token_ok(const struct tagmask *m, struct tm_state s, int32_t tok)
{
    const struct tagmask_vocab *v = m->v;
    if (v->flags[tok] & TV_CONTROL)
        return s.mode == M_TEXT;
    for (uint32_t i = v->off[tok]; i < v->off[tok + 1]; i++)
        if (step(m, &s, (unsigned char)v->bytes[i]))
            return 0;
    return 1;
}

void tagmask_apply(void *ctx, float *logits, int n_vocab)
{
    struct tagmask *m = ctx;
    if (m->pre)
        m->pre(m->pre_ctx, logits, n_vocab);
    int in_text = m->st.mode == M_TEXT;
    for (int t = 0; t < n_vocab; t++) {
        if (logits[t] == -INFINITY)
            continue;
        if (t >= m->v->n) { /* ids the tokenizer lacks show no text */
            if (!in_text)
                logits[t] = -INFINITY;
            continue;
        }
        if (in_text && !(m->v->flags[t] & TV_HAS_LT))
            continue; /* cannot start a tag */
        if (!token_ok(m, m->st, t))
            logits[t] = -INFINITY;
    }
}

void tagmask_accept(void *ctx, int32_t tok)
{
    struct tagmask *m = ctx;
    if (tok < 0 || tok >= m->v->n || (m->v->flags[tok] & TV_CONTROL))
        return;
    const struct tagmask_vocab *v = m->v;
    for (uint32_t i = v->off[tok]; i < v->off[tok + 1]; i++)
        if (step(m, &m->st, (unsigned char)v->bytes[i])) {
            m->st.mode = M_TEXT; /* only when the mask was bypassed (another hook): start over */
            return;
        }
}
