/*
 * prompt.h — the assistant's prompt format and the markup it writes: one module
 * that SFT data building and serving share, so the model is trained on exactly
 * the bytes and tokens it will see. docs/PROMPT.md is the specification.
 *
 * Design: a prompt is the chat format of src/tok (Phi-3 style: "<|role|>\n"
 * content "<|end|>\n") with one system message holding the rules and then the
 * evidence, one line per passage — "[n] (source, product id) text" — followed by
 * the conversation turns. Special tokens are emitted by id and every content
 * piece is encoded without TOK_PARSE_SPECIAL, so text in a review or a question
 * can never become a control token. Each message is encoded as role token, "\n",
 * content, end token, "\n" (five pieces), so the tokens of a serving prompt that
 * ends in "<|assistant|>\n" are a prefix of the training tokens of the same
 * conversation with its answer. The markup parser is a byte-driven state machine
 * over the closed tag grammar of docs/PROMPT.md; it copies nothing but a pending
 * tag or citation (at most MARKUP_MAX_PENDING bytes).
 *
 * Invariants: identical input gives identical text and tokens, and the system
 * part (rules + evidence) is a prefix of both, so a server's prefix cache hits
 * for every turn of a conversation over the same evidence. Evidence lines are
 * single lines of valid UTF-8 (control characters become spaces, invalid bytes
 * U+FFFD, long passages are cut at a character boundary with "…"). Citation ids
 * are 1..n in the order given (best first); the budget drops passages from the
 * end, whole, so the ids of the passages kept never change.
 *
 * Ownership: struct prompt owns its text, ids and mask; the input structs are
 * borrowed for the duration of the call. A markup piece points into the caller's
 * bytes or the parser's own pending buffer and is valid only during the callback.
 *
 * THREAD SAFETY: prompt_build is reentrant: a struct prompt and a tok_cache
 * belong to one thread at a time; the struct tok may be shared. A struct markup
 * belongs to one thread at a time.
 */
#ifndef AISLE_ASSIST_PROMPT_H
#define AISLE_ASSIST_PROMPT_H

#include <stddef.h>
#include <stdint.h>

#include "core/buf.h"
#include "tok/tok.h"

/* ---- building a prompt ---- */

#define PROMPT_MAX_PASSAGES 256             /* evidence passages in one prompt */
#define PROMPT_MAX_TURNS 64                 /* conversation messages */
#define PROMPT_PASSAGE_BYTES_DEFAULT 1200u  /* a passage's text is cut to this many bytes */
#define PROMPT_MAX_BYTES (4u << 20)         /* rendered text */
#define PROMPT_MAX_TOKENS (1u << 20)        /* tokens */
#define PROMPT_MAX_FIELD 128u               /* bytes of a passage's source, product id or as-of */

/* The default rules of the system message (docs/PROMPT.md). */
extern const char prompt_default_system[];

enum prompt_role { PROMPT_USER = 1, PROMPT_ASSISTANT = 2 };

/* One evidence passage. Live store facts (price, stock, delivery) are passages
 * too: their as_of says when the fact was read, stale marks one that is older
 * than its freshness limit (the shop's last good answer). */
struct prompt_passage {
    const char *source;     /* evidence.c's names: "product" (a title), "bullet", "attribute",
                             * "description", "review", "qa", "offer", "delivery", "order";
                             * NULL or "" = "text" */
    const char *product_id; /* NULL or "" when not about one product */
    const char *as_of;      /* NULL, or when a live fact was true ("2026-11-26 00:30 UTC") */
    int stale;              /* 1: rendered ", stale" after as_of */
    const char *text;       /* NUL-terminated; any bytes (sanitised as above) */
};

struct prompt_turn {
    enum prompt_role role;
    const char *text; /* NUL-terminated; invalid UTF-8 becomes U+FFFD */
};

struct prompt_input {
    const char *system;                     /* NULL: prompt_default_system */
    const struct prompt_passage *evidence;  /* (n_evidence) best first; citation id = index + 1 */
    size_t n_evidence;
    const struct prompt_turn *turns;        /* (n_turns) user/assistant, in order */
    size_t n_turns;
};

struct prompt_opts {
    size_t evidence_budget;    /* most tokens (bytes when built without a tokenizer) the
                                * evidence lines may take; 0 = no limit */
    size_t max_passage_bytes;  /* 0 = PROMPT_PASSAGE_BYTES_DEFAULT */
    int add_generation_prompt; /* end with "<|assistant|>\n" (serving) */
};

struct prompt {
    struct buf text;   /* the rendered prompt, special tokens as their text */
    struct tok_ids ids; /* (ids.len) tokens; empty when built without a tokenizer */
    uint8_t *mask;     /* (ids.len) 1 = an assistant token that counts in the loss
                        * (its content and its <|end|>), 0 = context */
    size_t mask_cap;
    size_t n_used;        /* passages kept: citations [1]..[n_used] */
    size_t n_dropped;     /* passages dropped by the budget */
    size_t evidence_cost; /* tokens (or bytes) of the evidence lines kept */
    size_t prefix_bytes;  /* text bytes of the system message, evidence included */
    size_t prefix_tokens; /* ids of the same part (BOS included) */
    char err[256];        /* detail of the last failure */
};

void prompt_init(struct prompt *p);
/* Free the storage; the prompt is empty and reusable. */
void prompt_release(struct prompt *p);

/* Render in into p (replacing what p held). With t, also its tokens and mask:
 * BOS when the vocabulary adds one, then each message as <|role|> "\n" content
 * <|end|> "\n", with mask 1 on every assistant message's content and <|end|>.
 * cache may be NULL (slower). Returns 0, AISLE_EINVAL (a NULL text, a bad role,
 * too many passages or turns), AISLE_EFORMAT (t lacks a chat special token),
 * AISLE_ETOOBIG (past PROMPT_MAX_BYTES / PROMPT_MAX_TOKENS) or AISLE_ENOMEM,
 * with detail in p->err. */
int prompt_build(struct prompt *p, const struct prompt_input *in, const struct prompt_opts *opts,
                 const struct tok *t, struct tok_cache *cache);

/* Append one evidence line's text ("[n] (source, id[, as of T][, stale]) text",
 * no newline) as prompt_build writes it. 0, AISLE_ENOMEM or AISLE_ETOOBIG. */
int prompt_passage_line(struct buf *out, size_t n, const struct prompt_passage *ps, size_t max_passage_bytes);

/* Append s[0..n) as an evidence line's text is written: control characters as
 * spaces, runs of spaces collapsed, trimmed, invalid UTF-8 as U+FFFD, and cut
 * at a character boundary to max bytes with "…" (max 0: no cut). 0,
 * AISLE_ENOMEM or AISLE_ETOOBIG. */
int prompt_clean_line(struct buf *out, const char *s, size_t n, size_t max);

/* ---- the markup the model writes ---- */

#define MARKUP_MAX_IDS 4       /* ids in <compare ids="A,B,C,D"/> */
#define MARKUP_MAX_ID_LEN 64   /* bytes of one id: [A-Za-z0-9_-] */
#define MARKUP_MAX_CITE 999    /* citations are [1]..[999] */
#define MARKUP_MAX_PENDING 320 /* longest well-formed tag is 14 + 4*64 + 3 + 3 bytes */

enum markup_kind {
    MARKUP_TEXT = 1,  /* plain text (whole UTF-8 characters) */
    MARKUP_TAG = 2,   /* a well-formed tag */
    MARKUP_CITE = 3,  /* [n] */
    MARKUP_ERROR = 4, /* a malformed or unknown tag, or a citation out of range */
};

enum markup_tag {
    MARKUP_PRODUCT = 1,  /* <product id="ID"/> */
    MARKUP_COMPARE = 2,  /* <compare ids="A,B"/> (2..4 ids) */
    MARKUP_PRICE = 3,    /* <price id="ID"/> */
    MARKUP_STOCK = 4,    /* <stock id="ID"/> */
    MARKUP_DELIVERY = 5, /* <delivery id="ID"/> */
};

struct markup_piece {
    enum markup_kind kind;
    const char *raw; /* (len) the bytes of the piece as written */
    size_t len;
    uint64_t offset; /* of raw[0] in the whole stream */
    enum markup_tag tag;               /* TAG */
    size_t n_ids;                      /* TAG */
    const char *ids[MARKUP_MAX_IDS];   /* TAG: point into raw, not NUL-terminated */
    size_t id_lens[MARKUP_MAX_IDS];
    unsigned cite;                     /* CITE (and ERROR for a citation out of range) */
    const char *error;                 /* ERROR: what is wrong, NUL-terminated */
};

/* Called for each piece in stream order; a nonzero return stops the parser and
 * is returned by markup_feed/markup_finish. */
typedef int (*markup_cb)(void *ud, const struct markup_piece *piece);

struct markup {
    int state;
    unsigned max_cite;  /* citations above it are errors; 0 = MARKUP_MAX_CITE */
    uint64_t offset;    /* bytes consumed so far */
    char pend[MARKUP_MAX_PENDING + 8]; /* a tag or citation in progress */
    size_t npend;
    unsigned char hold[4]; /* an incomplete UTF-8 character at the end of the last feed */
    size_t nhold;
    int tag;           /* enum markup_tag of the tag in progress */
    const char *lit;   /* the literal being matched */
    size_t li;         /* bytes of lit matched */
    size_t id_start[MARKUP_MAX_IDS], id_len[MARKUP_MAX_IDS], n_ids; /* ids in pend */
    uint64_t pend_off; /* stream offset of pend[0] (or of hold[0]) */
    char msg[160];     /* an error piece's message */
};

/* Start a stream. max_cite: the number of evidence passages (0: any [1..999]). */
void markup_init(struct markup *m, unsigned max_cite);
/* Parse the next n bytes (any split: a tag, citation or UTF-8 character may
 * straddle calls). 0 or the callback's nonzero return. */
int markup_feed(struct markup *m, const char *s, size_t n, markup_cb cb, void *ud);
/* End of stream: a tag still open is an ERROR piece ("unterminated"), a partial
 * citation or held bytes are TEXT. 0 or the callback's return. The parser is
 * ready for a new stream afterwards (same max_cite). */
int markup_finish(struct markup *m, markup_cb cb, void *ud);

/* A whole text at once: 0 when it has no ERROR piece, else AISLE_EFORMAT with
 * "offset N: message" of the first in err. Counts tags and citations when the
 * pointers are non-NULL. */
int markup_check(const char *s, size_t n, unsigned max_cite, size_t *n_tags, size_t *n_cites, char *err,
                 size_t errlen);

/* The tag's name ("product", ...), or NULL. */
const char *markup_tag_name(enum markup_tag tag);

#endif
