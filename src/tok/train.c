/*
 * train.c — byte-level BPE training; see train.h for the algorithm.
 *
 * Data: the distinct words live as runs of uint32 symbol ids in one array
 * (wsym, offsets woff, current lengths wlen) and shrink in place as merges
 * apply. Pairs live in a table indexed through a u64 map (left<<32|right):
 * count (weighted by word counts) and the list of words that contained the pair
 * when it was created or grew (may hold stale entries; a word is re-checked when
 * visited). The max-heap holds (count, left, right) snapshots.
 */
#include "tok/train.h"
#include "tok/tok_impl.h"

#include "core/error.h"
#include "core/hset.h"

#include <stdlib.h>
#include <string.h>

struct word_slot {
    uint64_t hash;
    uint32_t idx; /* word index + 1; 0 empty */
};

struct pair {
    uint32_t a, b;
    int64_t count;
    uint32_t *words; /* (nwords) owned */
    uint32_t nwords, capwords;
    uint32_t mark; /* merge step that last queued this pair for a heap push */
};

struct heap_ent {
    int64_t count;
    uint32_t a, b;
};

struct tok_trainer {
    void *re, *md;
    /* counted words */
    struct word_slot *slots;
    size_t slot_cap;
    char *wbytes; /* all distinct words' bytes */
    size_t wbytes_len, wbytes_cap;
    uint64_t *woff;  /* (nw) offset in wbytes (and in wsym while training) */
    uint32_t *wlen0; /* (nw) byte length */
    uint64_t *wcount;
    size_t nw, wcap;
    uint64_t bytes, words, skipped;
};

/* State of one training run. */
struct run {
    struct tok_trainer *tr;
    uint32_t *wsym; /* symbols of every word, at woff */
    uint32_t *wlen; /* (nw) current symbol count */
    uint32_t *wmark;
    /* tokens: raw bytes text */
    char *ttext;
    size_t ttext_len, ttext_cap;
    uint64_t *toff;
    uint32_t *tlen;
    size_t ntok, tcap;
    struct tok_u64map tmap; /* FNV(text) -> id */
    uint32_t (*merges)[2];
    size_t nmerges, mcap;
    /* fast trainer */
    struct tok_u64map pmap; /* (a<<32|b) -> pair index */
    struct pair *pairs;
    size_t npairs, pcap;
    struct heap_ent *heap;
    size_t hlen, hcap;
    uint32_t *touched; /* pairs to push after a merge step */
    size_t ntouched, tcap2;
};

int tok_trainer_new(struct tok_trainer **out, char *err, size_t errlen)
{
    struct tok_trainer *tr = calloc(1, sizeof(*tr));
    if (!tr) {
        tok_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    int rc = tok_regex_new(&tr->re, tok_gpt2_pattern, err, errlen);
    if (rc) {
        free(tr);
        return rc;
    }
    if (!(tr->md = tok_match_data_new(tr->re))) {
        tok_trainer_free(tr);
        tok_seterr(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    *out = tr;
    return 0;
}

void tok_trainer_free(struct tok_trainer *tr)
{
    if (!tr)
        return;
    tok_match_data_free(tr->md);
    tok_regex_free(tr->re);
    free(tr->slots);
    free(tr->wbytes);
    free(tr->woff);
    free(tr->wlen0);
    free(tr->wcount);
    free(tr);
}

void tok_trainer_stats(const struct tok_trainer *tr, struct tok_train_stats *st)
{
    st->bytes = tr->bytes;
    st->words = tr->words;
    st->distinct = tr->nw;
    st->distinct_bytes = tr->wbytes_len;
    st->skipped = tr->skipped;
}

/* Grow *p (elements of size sz, capacity *cap) to hold need elements. */
static int grow(void **p, size_t *cap, size_t need, size_t sz)
{
    if (need <= *cap)
        return 0;
    size_t ncap = *cap ? *cap : 64;
    while (ncap < need) {
        if (ncap > SIZE_MAX / 2 / sz)
            return AISLE_ENOMEM;
        ncap *= 2;
    }
    void *n = realloc(*p, ncap * sz);
    if (!n)
        return AISLE_ENOMEM;
    *p = n;
    *cap = ncap;
    return 0;
}

static int slots_grow(struct tok_trainer *tr)
{
    size_t ncap = tr->slot_cap ? tr->slot_cap * 2 : 1024;
    struct word_slot *ns = calloc(ncap, sizeof(*ns));
    if (!ns)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < tr->slot_cap; i++) {
        if (!tr->slots[i].idx)
            continue;
        size_t j = (size_t)tr->slots[i].hash & (ncap - 1);
        while (ns[j].idx)
            j = (j + 1) & (ncap - 1);
        ns[j] = tr->slots[i];
    }
    free(tr->slots);
    tr->slots = ns;
    tr->slot_cap = ncap;
    return 0;
}

static int count_word(struct tok_trainer *tr, const char *w, size_t n)
{
    tr->words++;
    if (n > TOK_TRAIN_MAX_WORD) {
        tr->skipped += n;
        return 0;
    }
    if (tr->nw + 1 > tr->slot_cap / 2 && slots_grow(tr))
        return AISLE_ENOMEM;
    uint64_t h = hset_hash(HSET_FNV_SEED, w, n);
    size_t mask = tr->slot_cap - 1, i = (size_t)h & mask;
    for (; tr->slots[i].idx; i = (i + 1) & mask) {
        uint32_t k = tr->slots[i].idx - 1;
        if (tr->slots[i].hash == h && tr->wlen0[k] == n && memcmp(tr->wbytes + tr->woff[k], w, n) == 0) {
            tr->wcount[k]++;
            return 0;
        }
    }
    if (tr->nw >= TOK_TRAIN_MAX_WORDS)
        return AISLE_ETOOBIG;
    size_t wc = tr->wcap;
    if (grow((void **)&tr->wbytes, &tr->wbytes_cap, tr->wbytes_len + n, 1))
        return AISLE_ENOMEM;
    if (tr->nw + 1 > wc) {
        size_t c1 = wc, c2 = wc, c3 = wc;
        if (grow((void **)&tr->woff, &c1, tr->nw + 1, sizeof(*tr->woff)) ||
            grow((void **)&tr->wlen0, &c2, tr->nw + 1, sizeof(*tr->wlen0)) ||
            grow((void **)&tr->wcount, &c3, tr->nw + 1, sizeof(*tr->wcount)))
            return AISLE_ENOMEM;
        tr->wcap = c1 < c2 ? (c1 < c3 ? c1 : c3) : (c2 < c3 ? c2 : c3);
    }
    memcpy(tr->wbytes + tr->wbytes_len, w, n);
    tr->woff[tr->nw] = tr->wbytes_len;
    tr->wlen0[tr->nw] = (uint32_t)n;
    tr->wcount[tr->nw] = 1;
    tr->wbytes_len += n;
    tr->slots[i].hash = h;
    tr->slots[i].idx = (uint32_t)++tr->nw;
    return 0;
}

int tok_trainer_feed(struct tok_trainer *tr, const char *text, size_t n)
{
    struct tok_pretok it;
    tok_pretok_init(&it, tr->re, tr->md, text, n);
    it.ascii_fast = 1; /* the trainer's pattern is GPT-2's */
    size_t start, len;
    tr->bytes += n;
    while (tok_pretok_next(&it, &start, &len)) {
        int rc = count_word(tr, text + start, len);
        if (rc)
            return rc;
    }
    return 0;
}

/* ---- shared by both trainers ---- */

static void run_release(struct run *r)
{
    free(r->wsym);
    free(r->wlen);
    free(r->wmark);
    free(r->ttext);
    free(r->toff);
    free(r->tlen);
    tok_u64map_release(&r->tmap);
    free(r->merges);
    tok_u64map_release(&r->pmap);
    for (size_t i = 0; i < r->npairs; i++)
        free(r->pairs[i].words);
    free(r->pairs);
    free(r->heap);
    free(r->touched);
}

static int add_token(struct run *r, const char *s, size_t n)
{
    size_t c1 = r->tcap, c2 = r->tcap;
    if (grow((void **)&r->ttext, &r->ttext_cap, r->ttext_len + n, 1) ||
        grow((void **)&r->toff, &c1, r->ntok + 1, sizeof(*r->toff)) ||
        grow((void **)&r->tlen, &c2, r->ntok + 1, sizeof(*r->tlen)))
        return AISLE_ENOMEM;
    r->tcap = c1 < c2 ? c1 : c2;
    memmove(r->ttext + r->ttext_len, s, n); /* s may point into ttext */
    r->toff[r->ntok] = r->ttext_len;
    r->tlen[r->ntok] = (uint32_t)n;
    r->ttext_len += n;
    uint64_t h = hset_hash(HSET_FNV_SEED, r->ttext + r->toff[r->ntok], n);
    if (h == TOK_U64MAP_EMPTY)
        h = 0;
    if (!tok_u64map_get(&r->tmap, h) && tok_u64map_put(&r->tmap, h, r->ntok))
        return AISLE_ENOMEM;
    r->ntok++;
    return 0;
}

static int run_init(struct run *r, struct tok_trainer *tr)
{
    memset(r, 0, sizeof(*r));
    r->tr = tr;
    size_t nw = tr->nw ? tr->nw : 1;
    r->wsym = malloc((tr->wbytes_len ? tr->wbytes_len : 1) * sizeof(*r->wsym));
    r->wlen = malloc(nw * sizeof(*r->wlen));
    r->wmark = calloc(nw, sizeof(*r->wmark));
    if (!r->wsym || !r->wlen || !r->wmark)
        return AISLE_ENOMEM;
    for (size_t i = 0; i < tr->wbytes_len; i++)
        r->wsym[i] = (unsigned char)tr->wbytes[i];
    for (size_t w = 0; w < tr->nw; w++)
        r->wlen[w] = tr->wlen0[w];
    for (int b = 0; b < 256; b++) {
        char c = (char)b;
        if (add_token(r, &c, 1))
            return AISLE_ENOMEM;
    }
    return 0;
}

/* The token for text(a)+text(b): an existing one with that text, else a new id. */
static int merge_token(struct run *r, uint32_t a, uint32_t b, uint32_t *id)
{
    size_t la = r->tlen[a], lb = r->tlen[b], n = la + lb;
    char tmp[2 * TOK_MAX_TOKEN_LEN];
    if (n > sizeof(tmp))
        return AISLE_ETOOBIG;
    memcpy(tmp, r->ttext + r->toff[a], la);
    memcpy(tmp + la, r->ttext + r->toff[b], lb);
    uint64_t h = hset_hash(HSET_FNV_SEED, tmp, n);
    if (h == TOK_U64MAP_EMPTY)
        h = 0;
    const uint64_t *v = tok_u64map_get(&r->tmap, h);
    if (v && r->tlen[*v] == n && memcmp(r->ttext + r->toff[*v], tmp, n) == 0) {
        *id = (uint32_t)*v;
        return 0;
    }
    if (add_token(r, tmp, n))
        return AISLE_ENOMEM;
    *id = (uint32_t)(r->ntok - 1);
    return 0;
}

static int record_merge(struct run *r, uint32_t a, uint32_t b)
{
    if (grow((void **)&r->merges, &r->mcap, r->nmerges + 1, sizeof(*r->merges)))
        return AISLE_ENOMEM;
    r->merges[r->nmerges][0] = a;
    r->merges[r->nmerges][1] = b;
    r->nmerges++;
    return 0;
}

/* Take (a,b) as the next merge: its token in *t, the merge recorded. */
static int choose(struct run *r, uint32_t a, uint32_t b, uint32_t *t, char *err, size_t errlen)
{
    int rc = merge_token(r, a, b, t);
    if (rc == AISLE_ETOOBIG)
        tok_seterr(err, errlen, "merged token longer than %u bytes", TOK_MAX_TOKEN_LEN);
    return rc ? rc : record_merge(r, a, b);
}

/* Replace each (a,b) in word w by t, left to right; 1 if any was replaced. */
static int merge_in_word(struct run *r, size_t w, uint32_t a, uint32_t b, uint32_t t)
{
    uint32_t *s = r->wsym + r->tr->woff[w];
    uint32_t n = r->wlen[w], o = 0;
    int any = 0;
    for (uint32_t i = 0; i < n; i++) {
        if (i + 1 < n && s[i] == a && s[i + 1] == b) {
            s[o++] = t;
            i++;
            any = 1;
        } else {
            s[o++] = s[i];
        }
    }
    r->wlen[w] = o;
    return any;
}

/* Build the tokenizer from the learned merges plus Aisle's special tokens. */
static int build_tok(struct run *r, struct tok **out, char *err, size_t errlen)
{
    static const char *const specials[TOK_N_AISLE_SPECIALS] = {TOK_ENDOFTEXT, TOK_SYSTEM, TOK_USER, TOK_ASSISTANT,
                                                               TOK_END};
    size_t n = r->ntok + TOK_N_AISLE_SPECIALS;
    char **texts = calloc(n, sizeof(*texts));
    size_t *lens = calloc(n, sizeof(*lens));
    int32_t *types = calloc(n, sizeof(*types));
    char **mtexts = calloc(r->nmerges ? r->nmerges : 1, sizeof(*mtexts));
    size_t *mlens = calloc(r->nmerges ? r->nmerges : 1, sizeof(*mlens));
    int rc = AISLE_ENOMEM;
    if (!texts || !lens || !types || !mtexts || !mlens)
        goto done;
    for (size_t i = 0; i < r->ntok; i++) {
        /* visible form: every byte as its mapped code point (<= 2 UTF-8 bytes) */
        const unsigned char *s = (const unsigned char *)r->ttext + r->toff[i];
        if (!(texts[i] = malloc(2 * (size_t)r->tlen[i] + 1)))
            goto done;
        size_t o = 0;
        for (uint32_t j = 0; j < r->tlen[i]; j++)
            o += tok_utf8_put(texts[i] + o, tok_byte_to_cp(s[j]));
        lens[i] = o;
        types[i] = TOK_TYPE_NORMAL;
    }
    for (size_t k = 0; k < TOK_N_AISLE_SPECIALS; k++) {
        size_t i = r->ntok + k;
        if (!(texts[i] = strdup(specials[k])))
            goto done;
        lens[i] = strlen(specials[k]);
        types[i] = TOK_TYPE_CONTROL;
    }
    for (size_t m = 0; m < r->nmerges; m++) {
        uint32_t a = r->merges[m][0], b = r->merges[m][1];
        if (!(mtexts[m] = malloc(lens[a] + lens[b] + 1)))
            goto done;
        memcpy(mtexts[m], texts[a], lens[a]);
        mtexts[m][lens[a]] = ' ';
        memcpy(mtexts[m] + lens[a] + 1, texts[b], lens[b]);
        mlens[m] = lens[a] + lens[b] + 1;
    }
    int32_t eot = (int32_t)r->ntok;
    struct tok_bpe_spec spec = {
        .tokens = (const char *const *)texts, .lens = lens, .types = types, .n = n,
        .merges = (const char *const *)mtexts, .mlens = mlens, .n_merges = r->nmerges,
        .bos = eot, .eos = eot, .eot = (int32_t)r->ntok + 4, .pad = eot,
        .add_bos = 0, .add_eos = 0, .pre = "gpt-2", .chat_template = tok_chat_template,
    };
    rc = tok_new_bpe(out, &spec, err, errlen);
done:
    if (rc == AISLE_ENOMEM)
        tok_seterr(err, errlen, "out of memory building the vocabulary");
    for (size_t i = 0; texts && i < n; i++)
        free(texts[i]);
    for (size_t m = 0; mtexts && m < r->nmerges; m++)
        free(mtexts[m]);
    free(texts);
    free(lens);
    free(types);
    free(mtexts);
    free(mlens);
    return rc;
}

static int check_size(size_t vocab_size, char *err, size_t errlen)
{
    if (vocab_size < TOK_TRAIN_MIN_VOCAB || vocab_size > TOK_MAX_VOCAB) {
        tok_seterr(err, errlen, "vocabulary size %zu: must be %d..%u (256 bytes + %d special tokens + merges)",
                   vocab_size, TOK_TRAIN_MIN_VOCAB, TOK_MAX_VOCAB, TOK_N_AISLE_SPECIALS);
        return AISLE_EINVAL;
    }
    return 0;
}

/* ---- the incremental trainer ---- */

/* Max-heap order: higher count, then smaller (a, b). */
static int heap_before(const struct heap_ent *x, const struct heap_ent *y)
{
    if (x->count != y->count)
        return x->count > y->count;
    if (x->a != y->a)
        return x->a < y->a;
    return x->b < y->b;
}

static int heap_push(struct run *r, int64_t count, uint32_t a, uint32_t b)
{
    if (grow((void **)&r->heap, &r->hcap, r->hlen + 1, sizeof(*r->heap)))
        return AISLE_ENOMEM;
    struct heap_ent e = {count, a, b};
    size_t i = r->hlen++;
    while (i > 0) {
        size_t p = (i - 1) / 2;
        if (!heap_before(&e, &r->heap[p]))
            break;
        r->heap[i] = r->heap[p];
        i = p;
    }
    r->heap[i] = e;
    return 0;
}

static struct heap_ent heap_pop(struct run *r)
{
    struct heap_ent top = r->heap[0], last = r->heap[--r->hlen];
    size_t i = 0, n = r->hlen;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= n)
            break;
        if (c + 1 < n && heap_before(&r->heap[c + 1], &r->heap[c]))
            c++;
        if (!heap_before(&r->heap[c], &last))
            break;
        r->heap[i] = r->heap[c];
        i = c;
    }
    if (n)
        r->heap[i] = last;
    return top;
}

static int pair_get(struct run *r, uint32_t a, uint32_t b, struct pair **out)
{
    uint64_t key = (uint64_t)a << 32 | b;
    uint64_t *v = tok_u64map_get(&r->pmap, key);
    if (v) {
        *out = &r->pairs[*v];
        return 0;
    }
    if (grow((void **)&r->pairs, &r->pcap, r->npairs + 1, sizeof(*r->pairs)) ||
        tok_u64map_put(&r->pmap, key, r->npairs))
        return AISLE_ENOMEM;
    struct pair *p = &r->pairs[r->npairs++];
    memset(p, 0, sizeof(*p));
    p->a = a;
    p->b = b;
    *out = p;
    return 0;
}

static int pair_add_word(struct pair *p, uint32_t w)
{
    if (p->nwords && p->words[p->nwords - 1] == w)
        return 0;
    if (p->nwords == p->capwords) {
        uint32_t ncap = p->capwords ? p->capwords * 2 : 4;
        uint32_t *n = realloc(p->words, ncap * sizeof(*n));
        if (!n)
            return AISLE_ENOMEM;
        p->words = n;
        p->capwords = ncap;
    }
    p->words[p->nwords++] = w;
    return 0;
}

/* Add (sign +1) or remove (-1) the pairs of word w; with t != UINT32_MAX, index
 * w under the pairs that contain t and queue them for a heap push at step. */
static int word_pairs(struct run *r, uint32_t w, int sign, uint32_t t, uint32_t step)
{
    const uint32_t *s = r->wsym + r->tr->woff[w];
    int64_t c = (int64_t)r->tr->wcount[w] * sign;
    for (uint32_t i = 0; i + 1 < r->wlen[w]; i++) {
        struct pair *p;
        if (pair_get(r, s[i], s[i + 1], &p))
            return AISLE_ENOMEM;
        p->count += c;
        if (t != UINT32_MAX && (s[i] == t || s[i + 1] == t)) {
            if (pair_add_word(p, w))
                return AISLE_ENOMEM;
            if (p->mark != step) {
                p->mark = step;
                if (grow((void **)&r->touched, &r->tcap2, r->ntouched + 1, sizeof(*r->touched)))
                    return AISLE_ENOMEM;
                r->touched[r->ntouched++] = (uint32_t)(p - r->pairs);
            }
        }
    }
    return 0;
}

int tok_trainer_train(struct tok_trainer *tr, size_t vocab_size, tok_train_progress_fn progress, void *ctx,
                      struct tok **out, char *err, size_t errlen)
{
    int rc = check_size(vocab_size, err, errlen);
    if (rc)
        return rc;
    struct run r;
    rc = AISLE_ENOMEM;
    if (run_init(&r, tr))
        goto done;
    /* initial pair counts and word lists */
    for (size_t w = 0; w < tr->nw; w++) {
        const uint32_t *s = r.wsym + tr->woff[w];
        for (uint32_t i = 0; i + 1 < r.wlen[w]; i++) {
            struct pair *p;
            if (pair_get(&r, s[i], s[i + 1], &p) || pair_add_word(p, (uint32_t)w))
                goto done;
            p->count += (int64_t)tr->wcount[w];
        }
    }
    for (size_t i = 0; i < r.npairs; i++)
        if (r.pairs[i].count > 0 && heap_push(&r, r.pairs[i].count, r.pairs[i].a, r.pairs[i].b))
            goto done;
    size_t target = vocab_size - TOK_N_AISLE_SPECIALS, planned = target - r.ntok;
    uint32_t step = 0;
    while (r.ntok < target && r.hlen) {
        struct heap_ent e = heap_pop(&r);
        struct pair *p;
        if (pair_get(&r, e.a, e.b, &p))
            goto done;
        if (p->count != e.count) {
            if (p->count > 0 && heap_push(&r, p->count, e.a, e.b))
                goto done;
            continue; /* stale snapshot */
        }
        step++;
        uint32_t a = e.a, b = e.b, t;
        if ((rc = choose(&r, a, b, &t, err, errlen)))
            goto done;
        rc = AISLE_ENOMEM;
        /* the word list may move while pairs are added: walk a detached copy */
        uint32_t *words = p->words, nwords = p->nwords;
        p->words = NULL;
        p->nwords = p->capwords = 0;
        r.ntouched = 0;
        for (uint32_t k = 0; k < nwords; k++) {
            uint32_t w = words[k];
            if (r.wmark[w] == step)
                continue;
            r.wmark[w] = step;
            /* subtract the word's pairs, merge, add them back: O(word) and exact for runs like "aaaa" */
            const uint32_t *s = r.wsym + tr->woff[w];
            int has = 0;
            for (uint32_t i = 0; i + 1 < r.wlen[w] && !has; i++)
                has = s[i] == a && s[i + 1] == b;
            if (!has)
                continue;
            if (word_pairs(&r, w, -1, UINT32_MAX, step))
                goto fail_words;
            merge_in_word(&r, w, a, b, t);
            if (word_pairs(&r, w, +1, t, step))
                goto fail_words;
        }
        free(words);
        for (size_t k = 0; k < r.ntouched; k++) {
            struct pair *q = &r.pairs[r.touched[k]];
            if (q->count > 0 && heap_push(&r, q->count, q->a, q->b))
                goto done;
        }
        if (progress && (r.nmerges % 64 == 0 || r.ntok == target) &&
            progress(ctx, r.ntok - 256, planned))
            break;
        continue;
    fail_words:
        free(words);
        goto done;
    }
    rc = build_tok(&r, out, err, errlen);
done:
    if (rc == AISLE_ENOMEM && err)
        tok_seterr(err, errlen, "out of memory while training");
    run_release(&r);
    return rc;
}

/* ---- the reference trainer ---- */

int tok_trainer_train_naive(struct tok_trainer *tr, size_t vocab_size, struct tok **out, char *err, size_t errlen)
{
    int rc = check_size(vocab_size, err, errlen);
    if (rc)
        return rc;
    struct run r;
    struct tok_u64map counts;
    tok_u64map_init(&counts);
    rc = AISLE_ENOMEM;
    if (run_init(&r, tr))
        goto done;
    size_t target = vocab_size - TOK_N_AISLE_SPECIALS;
    while (r.ntok < target) {
        /* recount every pair of every word */
        for (size_t i = 0; i < counts.cap; i++)
            counts.keys[i] = TOK_U64MAP_EMPTY;
        counts.len = 0;
        for (size_t w = 0; w < tr->nw; w++) {
            const uint32_t *s = r.wsym + tr->woff[w];
            for (uint32_t i = 0; i + 1 < r.wlen[w]; i++) {
                uint64_t key = (uint64_t)s[i] << 32 | s[i + 1];
                uint64_t *v = tok_u64map_get(&counts, key);
                if (v)
                    *v += tr->wcount[w];
                else if (tok_u64map_put(&counts, key, tr->wcount[w]))
                    goto done;
            }
        }
        uint64_t best = TOK_U64MAP_EMPTY, bestc = 0;
        for (size_t i = 0; i < counts.cap; i++) {
            uint64_t k = counts.keys[i];
            if (k == TOK_U64MAP_EMPTY)
                continue;
            if (counts.vals[i] > bestc || (counts.vals[i] == bestc && k < best)) {
                best = k;
                bestc = counts.vals[i];
            }
        }
        if (!bestc)
            break;
        uint32_t a = (uint32_t)(best >> 32), b = (uint32_t)best, t;
        if ((rc = choose(&r, a, b, &t, err, errlen)))
            goto done;
        rc = AISLE_ENOMEM;
        for (size_t w = 0; w < tr->nw; w++)
            merge_in_word(&r, w, a, b, t);
    }
    rc = build_tok(&r, out, err, errlen);
done:
    if (rc == AISLE_ENOMEM && err)
        tok_seterr(err, errlen, "out of memory while training");
    tok_u64map_release(&counts);
    run_release(&r);
    return rc;
}
