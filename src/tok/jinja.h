/*
 * jinja.h — a small, safe interpreter for the Jinja subset that chat
 * templates use (a GGUF's tokenizer.chat_template, HF's apply_chat_template).
 *
 * Supported: text; {{ expr }}; {% if %}/{% elif %}/{% else %}/{% endif %};
 * {% for x in expr [if cond] %}...{% else %}...{% endfor %} with
 * loop.index0/index/first/last/length; {% for k, v in expr %} (unpacking); {% set name = expr %} and
 * {% set ns.attr = expr %} on a namespace(); {# comments #}; whitespace
 * control {%- -%} {{- -}} and HF's environment settings (trim_blocks,
 * lstrip_blocks). Expressions: string, integer, true/false/none literals,
 * lists and maps; names; x.attr, x['key'], x[i], x[a:b]; + - * / // % ~;
 * == != < <= > >=; in, not in; and, or, not; a if c else b; `is` tests
 * (defined, undefined, none, string, number, boolean, true, false, mapping,
 * iterable); filters trim, length/count, upper, lower, capitalize, first,
 * last, string, default, items, list, join, select/reject and
 * selectattr/rejectattr (those tests and equalto/ne), replace, safe,
 * tojson (strings, numbers, booleans, none, lists, maps); string methods
 * strip/lstrip/rstrip/upper/lower/startswith/endswith, a map's
 * get/items/keys/values; the globals messages, bos_token, eos_token,
 * add_generation_prompt,
 * raise_exception(msg), range(n), namespace(k=v, ...).
 *
 * Limits (untrusted templates): template TOK_MAX_TEMPLATE bytes, output
 * opts->max_output bytes (default 1 MiB), 100,000 loop iterations in all,
 * nesting 64 deep. Anything outside the subset is a clear error, never a
 * crash; the renderer allocates only from its own arena, freed on return.
 *
 * THREAD SAFETY: reentrant; no global state.
 */
#ifndef AISLE_TOK_JINJA_H
#define AISLE_TOK_JINJA_H

#include "core/buf.h"
#include "tok/tok.h"

#include <stddef.h>

#define TOK_JINJA_MAX_OUTPUT (1u << 20) /* default output cap, bytes */
#define TOK_JINJA_MAX_ITERS 100000      /* loop iterations over a whole render */
#define TOK_JINJA_MAX_DEPTH 64          /* nesting of blocks and expressions */

struct tok_jinja_opts {
    const char *bos_token, *eos_token; /* NULL = "" */
    int add_generation_prompt;
    size_t max_output; /* 0 = TOK_JINJA_MAX_OUTPUT */
};

/* Render template tmpl (tlen bytes, need not be NUL-terminated) for the
 * conversation msgs (n messages; roles are passed through as they are) and
 * append the text to out. Returns 0; AISLE_EFORMAT for a syntax error or a
 * construct outside the subset; AISLE_EINVAL when the template calls
 * raise_exception or an operation fails (a type error, a bad index);
 * AISLE_ETOOBIG past a limit; AISLE_ENOMEM. On error, err holds a message
 * (with the template line where it applies) and out may hold a partial
 * render. */
int tok_jinja_render(const char *tmpl, size_t tlen, const struct tok_chat_msg *msgs, size_t n,
                     const struct tok_jinja_opts *opts, struct buf *out, char *err, size_t errlen);

#endif
