/*
 * train.c — `aisle train`: pretrain a Llama on a corpus (aisle corpus build)
 * with per-source mixing weights, or fine-tune one on SFT shards with their
 * loss masks; validation loss per source, atomic checkpoints with exact
 * resume, a progress line, a CSV log, a gnuplot PNG, and export to GGUF (F32
 * and Q8_0, tokenizer embedded). Under mpirun: data parallel, gradients
 * summed with MPI_Allreduce; rank 0 alone writes files.
 *
 * Options come from, in order (later wins): a checkpoint's saved
 * configuration (--resume), a --config file, the command line. The saved
 * configuration is the config-file format: "name = value" lines.
 *
 * One step: every process draws the same global batch of --batch rows
 * (tdata_next_batch), takes rows [rank*B/P, (rank+1)*B/P), runs them in
 * micro-batches of --micro-batch rows with grad_scale 1/(micro-batches * P),
 * the gradient slab is summed over processes, clipped, and AdamW steps. One
 * process with micro-batches of B/P rows computes the same sums in another
 * order (tests/train/cli_test.c compares them).
 */
#include "cli.h"
#include "cmds.h"

#include "core/error.h"
#include "core/hset.h"
#include "gguf/gguf.h"
#include "tensor/tensor.h"
#include "tok/tok.h"
#include "train/atomic.h"
#include "train/ckpt.h"
#include "train/corpus.h"
#include "train/data.h"
#include "train/dist.h"
#include "train/llama_train.h"
#include "train/pref.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#define PATHMAX 1024

struct opts {
    char corpus[PATHMAX], mix[512], init[PATHMAX], out[PATHMAX], resume[PATHMAX], tokenizer[PATHMAX];
    char prefs[PATHMAX], pref_val[PATHMAX];
    double beta, kto_d, kto_u;
    char name[128];
    char sft[TDATA_MAX_SFT][PATHMAX];
    int n_sft;
    long dim, layers, heads, kv_heads, ffn, ctx, tied;
    long batch, micro_batch;
    double lr, min_lr, weight_decay, clip, beta1, beta2, init_std;
    long warmup, steps, eval_every, eval_tokens, ckpt_every, log_every, stop_at, threads, do_export, plot;
    long long tokens;
    unsigned long long seed;
    double time_limit;
};

enum kind { K_STR, K_LONG, K_LL, K_U64, K_DBL, K_SFT };

struct opt {
    const char *name;
    enum kind kind;
    size_t off;
    double lo, hi;
    int session; /* 1: may change on --resume; 2: also not kept in the checkpoint (this session only) */
    const char *help;
};

#define O(f) offsetof(struct opts, f)
static const struct opt table[] = {
    {"corpus", K_STR, O(corpus), 0, 0, 1, "DIR      corpus directory (aisle corpus build)"},
    {"mix", K_STR, O(mix), 0, 0, 0, "SPEC        source weights, e.g. catalog=0.4,reviews=0.3,qa=0.2,text=0.1\n"
                                    "                      (default: proportional to train tokens)"},
    {"sft", K_SFT, O(sft), 0, 0, 0, "PATH[@W]    an SFT shard and its weight (repeatable): train on\n"
                                    "                      examples with their loss masks instead of the corpus"},
    {"prefs", K_STR, O(prefs), 0, 0, 0, "JSONL     preference tuning on `aisle feedback export` rows:\n"
                                        "                      DPO pairs or KTO thumbs (needs --init, also the\n"
                                        "                      frozen reference; --batch counts rows of the file)"},
    {"pref-val", K_STR, O(pref_val), 0, 0, 1, "JSONL  held-out rows of the same kind: loss, accuracy\n"
                                              "                      and margin at every --eval-every"},
    {"beta", K_DBL, O(beta), 1e-4, 100, 0, "X          DPO/KTO beta: how far from the reference (default 0.1)"},
    {"kto-desirable", K_DBL, O(kto_d), 0, 100, 0, "X  KTO weight of thumbs-up rows (default 1)"},
    {"kto-undesirable", K_DBL, O(kto_u), 0, 100, 0, "X  KTO weight of thumbs-down rows (default 1)"},
    {"init", K_STR, O(init), 0, 0, 0, "GGUF       start from this model's weights (its shape and tokenizer)"},
    {"tokenizer", K_STR, O(tokenizer), 0, 0, 0, "GGUF  tokenizer to embed (default: the corpus's or --init's)"},
    {"out", K_STR, O(out), 0, 0, 1, "DIR         run directory: ckpt.bin, log.csv, loss.png, model.gguf,\n"
                                    "                      model-q8_0.gguf (created if missing)"},
    {"name", K_STR, O(name), 0, 0, 0, "TEXT       general.name of the exported model"},
    {"dim", K_LONG, O(dim), 8, 65536, 0, "N           embedding width C (default 256)"},
    {"layers", K_LONG, O(layers), 1, 1024, 0, "N        transformer blocks (default 4)"},
    {"heads", K_LONG, O(heads), 1, 1024, 0, "N         query heads (default 4)"},
    {"kv-heads", K_LONG, O(kv_heads), 0, 1024, 0, "N      key/value heads (default: heads)"},
    {"ffn", K_LONG, O(ffn), 0, 1 << 20, 0, "N           FFN width (default: about 8/3 dim, a multiple of 32)"},
    {"ctx", K_LONG, O(ctx), 2, 1 << 16, 0, "N           sequence length T (default 256)"},
    {"tied", K_LONG, O(tied), 0, 1, 0, "0|1        output projection tied to the embedding (default 1)"},
    {"batch", K_LONG, O(batch), 1, 1 << 20, 0, "N         global batch, rows of ctx tokens (default 8)"},
    {"micro-batch", K_LONG, O(micro_batch), 0, 1 << 20, 0, "N   rows per forward per process (default: all\n"
                                                         "                      of this process's rows)"},
    {"lr", K_DBL, O(lr), 0, 10, 0, "X             peak learning rate (default 1e-3)"},
    {"min-lr", K_DBL, O(min_lr), 0, 10, 0, "X         learning rate at the end of the cosine (default lr/10)"},
    {"warmup", K_LONG, O(warmup), 0, 1e9, 0, "N        warmup steps (default 100)"},
    {"weight-decay", K_DBL, O(weight_decay), 0, 10, 0, "X   AdamW decoupled weight decay (default 0.1)"},
    {"clip", K_DBL, O(clip), 0, 1e9, 0, "X           gradient norm clip, 0 = off (default 1.0)"},
    {"beta1", K_DBL, O(beta1), 0, 0.999999, 0, "X          AdamW beta1 (default 0.9)"},
    {"beta2", K_DBL, O(beta2), 0, 0.999999, 0, "X          AdamW beta2 (default 0.95)"},
    {"init-std", K_DBL, O(init_std), 1e-6, 10, 0, "X       init standard deviation (default 0.02)"},
    {"steps", K_LONG, O(steps), 0, 1e12, 1, "N         optimizer steps (or --tokens)"},
    {"tokens", K_LL, O(tokens), 0, 1e18, 1, "N        training tokens: steps = ceil(N / (batch * ctx))"},
    {"eval-every", K_LONG, O(eval_every), 0, 1e12, 1, "N    validation loss per source every N steps and at\n"
                                                      "                      the end (default 100; 0 = only at the end)"},
    {"eval-tokens", K_LONG, O(eval_tokens), 0, 1e12, 1, "N   validation tokens per source (default 65536)"},
    {"ckpt-every", K_LONG, O(ckpt_every), 0, 1e12, 1, "N    checkpoint every N steps (default 500; 0 = at the end)"},
    {"log-every", K_LONG, O(log_every), 1, 1e12, 1, "N     progress line every N steps (default 10)"},
    {"stop-at", K_LONG, O(stop_at), 0, 1e12, 2, "N       checkpoint and stop after step N (a session boundary)"},
    {"time-limit", K_DBL, O(time_limit), 0, 1e12, 2, "S    checkpoint and stop after S seconds of this session"},
    {"seed", K_U64, O(seed), 0, 0, 0, "N          seed of init and data sampling (default 1)"},
    {"threads", K_LONG, O(threads), 0, 4096, 1, "N       threads per process for sgemm and kernels (default: all\n"
                                                "                      CPUs / processes)"},
    {"export", K_LONG, O(do_export), 0, 1, 1, "0|1      write model.gguf and model-q8_0.gguf at the end (default 1)"},
    {"plot", K_LONG, O(plot), 0, 1, 1, "0|1        write loss.png with gnuplot (default 1)"},
};
#define NOPTS (sizeof table / sizeof table[0])

static const char usage_head[] =
    "usage: aisle train --corpus DIR --out DIR [--steps N | --tokens N] [options]\n"
    "       aisle train --init MODEL.gguf --sft SHARD.sft[@W]... --out DIR --steps N [options]\n"
    "       aisle train --init MODEL.gguf --prefs ROWS.jsonl --out DIR --steps N [options]\n"
    "       aisle train --resume DIR/ckpt.bin [--steps N] [session options]\n"
    "       aisle train --config FILE [options]\n"
    "\n"
    "Train a Llama-architecture model in F32 on this machine (or on many with\n"
    "'mpirun -np N aisle train ...': each process takes a share of every batch\n"
    "and gradients are summed with MPI_Allreduce; rank 0 writes the files).\n"
    "A --config FILE holds 'name = value' lines with the option names below\n"
    "('#' starts a comment); the command line overrides it. --resume continues\n"
    "a checkpoint exactly (same batches, same losses at the same thread count);\n"
    "only the options marked * may change then. Ctrl-C (SIGINT) or SIGTERM ends\n"
    "the run after the current step with a checkpoint (a second one kills).\n"
    "\n"
    "Each step prints (every --log-every) step, loss, learning rate, tokens/s and\n"
    "ETA; log.csv gets one row per step (step, tokens, loss, lr, grad_norm,\n"
    "tokens_per_s, elapsed_s, val_SOURCE...; with --prefs acc, margin, val_loss,\n"
    "val_acc, val_margin); loss.png plots it (gnuplot).\n"
    "\n"
    "  --config FILE     options from a file\n"
    "  --resume CKPT     continue from a checkpoint\n";

static void usage(FILE *f)
{
    fputs(usage_head, f);
    for (size_t i = 0; i < NOPTS; i++) {
        const char *sp = strchr(table[i].help, ' ');
        int w = sp ? (int)(sp - table[i].help) : (int)strlen(table[i].help);
        char lhs[64];
        snprintf(lhs, sizeof lhs, "--%s %.*s", table[i].name, w, table[i].help);
        fprintf(f, "  %-17s%s%s\n", lhs, table[i].session ? "*" : " ", sp ? sp + strspn(sp, " ") - 1 : "");
    }
    fputs("  -h, --help        this help\n", f);
}

static const struct opt *find_opt(const char *name, size_t n)
{
    for (size_t i = 0; i < NOPTS; i++)
        if (strlen(table[i].name) == n && !strncmp(table[i].name, name, n))
            return &table[i];
    return NULL;
}

/* Set one option from text. 0, or -1 with a message in err. */
static int set_opt(struct opts *o, const struct opt *op, const char *val, char *err, size_t errlen)
{
    char *p = (char *)o + op->off, *end;
    errno = 0;
    switch (op->kind) {
    case K_STR:
        if (strlen(val) >= (op->off == O(mix) ? 512 : op->off == O(name) ? 128 : PATHMAX))
            goto bad;
        strcpy(p, val);
        return 0;
    case K_SFT:
        if (o->n_sft == TDATA_MAX_SFT || strlen(val) >= PATHMAX || !*val)
            goto bad;
        strcpy(o->sft[o->n_sft++], val);
        return 0;
    case K_LONG: {
        long v = strtol(val, &end, 10);
        if (*end || end == val || errno || v < op->lo || v > op->hi)
            goto bad;
        *(long *)(void *)p = v;
        return 0;
    }
    case K_LL: {
        long long v = strtoll(val, &end, 10);
        if (*end || end == val || errno || v < op->lo || (double)v > op->hi)
            goto bad;
        *(long long *)(void *)p = v;
        return 0;
    }
    case K_U64: {
        unsigned long long v = strtoull(val, &end, 10);
        if (*end || end == val || errno || val[0] == '-')
            goto bad;
        *(unsigned long long *)(void *)p = v;
        return 0;
    }
    case K_DBL: {
        double v = strtod(val, &end);
        if (*end || end == val || !(v >= op->lo && v <= op->hi))
            goto bad;
        *(double *)(void *)p = v;
        return 0;
    }
    }
bad:
    snprintf(err, errlen, "--%s: bad value '%s'", op->name, val);
    return -1;
}

/* "name = value" lines (file or checkpoint text). Returns 0 or -1 with err
 * naming where. When only_session, a non-session option that changes is an error. */
static int parse_config_text(struct opts *o, const char *text, const char *where, char *err, size_t errlen)
{
    int lineno = 0;
    const char *p = text;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        char line[PATHMAX + 64];
        lineno++;
        if (n >= sizeof line) {
            snprintf(err, errlen, "%s:%d: line too long", where, lineno);
            return -1;
        }
        memcpy(line, p, n);
        line[n] = 0;
        p = e ? e + 1 : p + n;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = 0;
        char *s = line + strspn(line, " \t\r");
        size_t len = strlen(s);
        while (len && strchr(" \t\r", s[len - 1]))
            s[--len] = 0;
        if (!len)
            continue;
        char *eq = strchr(s, '=');
        if (!eq) {
            snprintf(err, errlen, "%s:%d: expected 'name = value'", where, lineno);
            return -1;
        }
        char *k = s, *v = eq + 1;
        char *ke = eq;
        while (ke > k && strchr(" \t", ke[-1]))
            ke--;
        v += strspn(v, " \t");
        const struct opt *op = find_opt(k, (size_t)(ke - k));
        if (!op) {
            snprintf(err, errlen, "%s:%d: unknown option '%.*s'", where, lineno, (int)(ke - k), k);
            return -1;
        }
        char e2[256];
        if (set_opt(o, op, v, e2, sizeof e2)) {
            snprintf(err, errlen, "%s:%d: %s", where, lineno, e2);
            return -1;
        }
    }
    return 0;
}

/* The configuration as text, every option that is set (the checkpoint keeps it). */
static char *config_text(const struct opts *o)
{
    size_t cap = 65536 + (size_t)o->n_sft * (PATHMAX + 16), n = 0;
    char *t = malloc(cap);
    if (!t)
        return NULL;
    for (size_t i = 0; i < NOPTS; i++) {
        const struct opt *op = &table[i];
        const char *p = (const char *)o + op->off;
        if (op->session == 2)
            continue;
        switch (op->kind) {
        case K_STR:
            if (*p)
                n += (size_t)snprintf(t + n, cap - n, "%s = %s\n", op->name, p);
            break;
        case K_SFT:
            for (int k = 0; k < o->n_sft; k++)
                n += (size_t)snprintf(t + n, cap - n, "%s = %s\n", op->name, o->sft[k]);
            break;
        case K_LONG: n += (size_t)snprintf(t + n, cap - n, "%s = %ld\n", op->name, *(const long *)(const void *)p); break;
        case K_LL:
            n += (size_t)snprintf(t + n, cap - n, "%s = %lld\n", op->name, *(const long long *)(const void *)p);
            break;
        case K_U64:
            n += (size_t)snprintf(t + n, cap - n, "%s = %llu\n", op->name,
                                  *(const unsigned long long *)(const void *)p);
            break;
        case K_DBL:
            n += (size_t)snprintf(t + n, cap - n, "%s = %.17g\n", op->name, *(const double *)(const void *)p);
            break;
        }
    }
    return t;
}

static char *read_small_file(const char *path, size_t max, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return NULL;
    char *b = malloc(max + 1);
    size_t n = b ? fread(b, 1, max + 1, f) : 0;
    int bad = !b || ferror(f) || n > max;
    fclose(f);
    if (bad) {
        free(b);
        return NULL;
    }
    b[n] = 0;
    if (len)
        *len = n;
    return b;
}

/* ------------------------------------------------------------------ state */

struct run {
    struct opts o;
    struct dist d;
    struct tdata data;
    struct ltr_model *m;
    struct ltr_config cfg;
    char *tok_bytes; /* tokenizer GGUF bytes */
    size_t tok_len;
    int B, MB, T, rows, n_micro;
    long total_steps;
    struct ckpt_state st;
    int32_t *tokens, *targets; /* (rows, T) */
    float *weights;
    float *vloss;             /* (n_src) last validation losses, NAN when none */
    int prefs;                /* --prefs: preference tuning (the batch counts examples) */
    struct pref_set pt, pv;   /* train and held-out examples */
    double *ref_t, *ref_v;    /* (2n) the reference's log-probabilities, in ref_mem */
    char *ref_mem;            /* pref-ref.bin's bytes */
    struct pref_params pp;
    double pval[3];           /* held-out loss, accuracy, margin; NAN when none */
    FILE *csv;
    double session_start;
    char err[1024];
};

static void fail(struct run *r, const char *fmt, ...) __attribute__((format(printf, 2, 3), noreturn));
static void fail(struct run *r, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "aisle train: ");
    if (r->d.size > 1)
        fprintf(stderr, "rank %d: ", r->d.rank);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    dist_abort(&r->d, 1);
    exit(1);
}

/* The first SIGINT or SIGTERM ends the run after the current step with a
 * checkpoint (rank 0's flag is broadcast, so every process stops together);
 * the handler then restores the default, so a second signal kills. */
static volatile sig_atomic_t stop_signal;

static void on_signal(int sig)
{
    stop_signal = 1;
    signal(sig, SIG_DFL);
}

static void hms(char *buf, size_t n, double s)
{
    if (!(s >= 0) || s > 1e8)
        s = 0;
    long t = (long)(s + 0.5);
    snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
}

static void out_path(char *buf, size_t n, const struct run *r, const char *name)
{
    snprintf(buf, n, "%s/%s", r->o.out, name);
}

/* The tokenizer as GGUF bytes: --tokenizer, else the corpus's, else a
 * tokenizer-only GGUF written from --init's model. */
static void load_tokenizer(struct run *r)
{
    char path[PATHMAX + 64];
    const char *src = NULL;
    if (r->o.tokenizer[0])
        src = r->o.tokenizer;
    else if (r->o.corpus[0] && r->data.manifest) {
        snprintf(path, sizeof path, "%s/%s", r->o.corpus, r->data.manifest->tokenizer);
        src = path;
    } else if (r->o.init[0]) {
        struct gguf *g;
        struct tok *t;
        if (gguf_open(&g, r->o.init, r->err, sizeof r->err) || tok_load_gguf(&t, g, r->err, sizeof r->err))
            fail(r, "--init %s: no usable tokenizer: %s", r->o.init, r->err);
        struct gguf_writer *w = gguf_writer_new();
        out_path(path, sizeof path, r, "tokenizer.gguf");
        if (!w || gguf_writer_set_str(w, "general.architecture", "llama") || tok_save_gguf(t, w) ||
            gguf_writer_write(w, path, r->err, sizeof r->err))
            fail(r, "writing %s: %s", path, r->err);
        gguf_writer_free(w);
        tok_free(t);
        gguf_close(g);
        src = path;
    }
    if (!src)
        fail(r, "no tokenizer: give --corpus, --init or --tokenizer");
    if (!(r->tok_bytes = read_small_file(src, CKPT_MAX_TOKENIZER, &r->tok_len)))
        fail(r, "%s: cannot read (or over %u bytes)", src, CKPT_MAX_TOKENIZER);
}

static void csv_open(struct run *r, int resumed)
{
    char path[PATHMAX + 64];
    out_path(path, sizeof path, r, "log.csv");
    if (resumed) {
        /* Keep the rows up to the checkpoint's step (later ones will be
         * redone), rewritten atomically: a crash here leaves the old log. */
        size_t n, k = 0;
        char *old = read_small_file(path, 1u << 30, &n);
        if (old) {
            const char *p = old;
            int first = 1;
            while (*p) {
                const char *e = strchr(p, '\n');
                size_t len = e ? (size_t)(e - p + 1) : strlen(p);
                if (first || strtoull(p, NULL, 10) <= r->st.step) {
                    memmove(old + k, p, len);
                    k += len;
                }
                first = 0;
                p += len;
            }
            if (trn_atomic_write(path, old, k, r->err, sizeof r->err))
                fail(r, "%s", r->err);
            free(old);
            if (!(r->csv = fopen(path, "ab")))
                fail(r, "%s: %s", path, strerror(errno));
            return;
        }
    }
    if (!(r->csv = fopen(path, "wb")))
        fail(r, "%s: %s", path, strerror(errno));
    fprintf(r->csv, "step,tokens,loss,lr,grad_norm,tokens_per_s,elapsed_s");
    if (r->prefs)
        fprintf(r->csv, ",acc,margin,val_loss,val_acc,val_margin");
    for (int i = 0; i < r->data.n_src; i++)
        fprintf(r->csv, ",val_%s", r->data.names[i]);
    fputc('\n', r->csv);
    fflush(r->csv);
}

/* Mean validation loss per source over its first eval-tokens windows; the
 * windows are spread over the processes and the sums added. */
static void evaluate(struct run *r)
{
    int n = r->data.n_src;
    double *acc = calloc((size_t)2 * n + 1, sizeof *acc);
    if (!acc)
        fail(r, "out of memory");
    for (int s = 0; s < n; s++) {
        uint64_t w = tdata_val_windows(&r->data, s, r->T, (uint64_t)r->o.eval_tokens / (uint64_t)r->T);
        uint64_t i = (uint64_t)r->d.rank;
        while (i < w) {
            int k = 0;
            for (; k < r->MB && i < w; k++, i += (uint64_t)r->d.size)
                tdata_val_window(&r->data, s, i, r->T, r->tokens + (size_t)k * r->T, r->targets + (size_t)k * r->T);
            float loss;
            if (ltr_forward(r->m, r->tokens, r->targets, NULL, k, r->T, &loss))
                fail(r, "validation forward failed");
            acc[2 * s] += (double)loss * k;
            acc[2 * s + 1] += k;
        }
    }
    if (dist_sum_f64(&r->d, acc, (size_t)2 * n))
        fail(r, "MPI allreduce failed");
    for (int s = 0; s < n; s++)
        r->vloss[s] = acc[2 * s + 1] > 0 ? (float)(acc[2 * s] / acc[2 * s + 1]) : NAN;
    free(acc);
}

/* splitmix64: the example draws of --prefs, from the checkpointed RNG. */
static uint64_t draw(uint64_t *x)
{
    uint64_t z = (*x += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* One preference step: every process draws the same B examples (uniform,
 * with replacement) and runs its own share in micro-batches; each example's
 * gradient is scaled by 1/B, so the summed slab is the batch mean's. */
static void pref_step(struct run *r, size_t *idx, struct pref_stats *st)
{
    for (int i = 0; i < r->B; i++)
        idx[i] = (size_t)(draw(&r->data.rng) % r->pt.n);
    const size_t *mine = idx + (size_t)r->d.rank * r->rows;
    for (int k0 = 0; k0 < r->rows; k0 += r->MB) {
        int rc = pref_micro_batch(r->m, &r->pt, r->ref_t, mine + k0, r->MB, &r->pp, 1.0f / (float)r->B, 1, r->tokens,
                                  r->targets, r->weights, NULL, st);
        if (rc)
            fail(r, "preference step %llu: %s", (unsigned long long)r->st.step + 1, aisle_strerror(rc));
    }
}

/* Loss, accuracy and margin over every held-out example (spread over the
 * processes, micro-batches of MB examples). */
static void pref_evaluate(struct run *r, size_t *idx)
{
    struct pref_stats st = {0};
    size_t i = (size_t)r->d.rank;
    while (i < r->pv.n) {
        int k = 0;
        for (; k < r->MB && i < r->pv.n; k++, i += (size_t)r->d.size)
            idx[k] = i;
        if (pref_micro_batch(r->m, &r->pv, r->ref_v, idx, k, &r->pp, 0, 0, r->tokens, r->targets, r->weights, NULL,
                             &st))
            fail(r, "held-out preference forward failed");
    }
    double acc[4] = {st.loss, st.correct, st.margin, st.n};
    if (dist_sum_f64(&r->d, acc, 4))
        fail(r, "MPI allreduce failed");
    for (int j = 0; j < 3; j++)
        r->pval[j] = acc[3] > 0 ? acc[j] / acc[3] : NAN;
}

/* DIR/pref-ref.bin: the reference's log-probabilities, so a resumed run
 * does not score every sequence again. The key covers what they depend on:
 * the starting weights and every sequence (tokens and completion start). */
struct ref_head {
    char magic[8];
    uint64_t key, n;
};

static uint64_t pref_key(const struct run *r)
{
    uint64_t h = hset_hash(0, r->m->params_mem, r->m->n_params * sizeof(float));
    const struct pref_set *sets[2] = {&r->pt, &r->pv};
    for (int i = 0; i < 2; i++) {
        const struct pref_set *s = sets[i];
        h = hset_hash(h, &s->n, sizeof s->n);
        if (!s->n)
            continue;
        h = hset_hash(h, s->ids, s->off[2 * s->n] * sizeof *s->ids);
        h = hset_hash(h, s->off, (2 * s->n + 1) * sizeof *s->off);
        h = hset_hash(h, s->start, 2 * s->n * sizeof *s->start);
    }
    return h;
}

/* Load the --prefs rows (and --pref-val) with the model's tokenizer and
 * score them with the starting weights: the frozen reference. */
static void pref_setup(struct run *r, const struct gguf *ig)
{
    struct tok *t;
    if (tok_load_gguf(&t, ig, r->err, sizeof r->err))
        fail(r, "--init %s: no usable tokenizer: %s", r->o.init, r->err);
    if (pref_load(&r->pt, r->o.prefs, t, r->T + 1, r->err, sizeof r->err))
        fail(r, "--prefs %s", r->err);
    if (r->o.pref_val[0]) {
        if (pref_load(&r->pv, r->o.pref_val, t, r->T + 1, r->err, sizeof r->err))
            fail(r, "--pref-val %s", r->err);
        if (r->pv.kind != r->pt.kind)
            fail(r, "--pref-val %s holds %s rows, --prefs %s", r->o.pref_val, r->pv.kind == PREF_DPO ? "DPO" : "KTO",
                 r->pt.kind == PREF_DPO ? "DPO" : "KTO");
    }
    tok_free(t);
    double t0 = cli_now();
    size_t nt = 2 * r->pt.n, nv = 2 * r->pv.n, bytes = sizeof(struct ref_head) + (nt + nv) * sizeof(double);
    char path[PATHMAX + 64];
    out_path(path, sizeof path, r, "pref-ref.bin");
    struct ref_head want = {{'A', 'I', 'S', 'L', 'E', 'R', 'E', 'F'}, pref_key(r), nt + nv};
    char *buf = malloc(bytes);
    if (!buf)
        fail(r, "out of memory");
    size_t got = 0;
    char *old = read_small_file(path, bytes, &got);
    int cached = old && got == bytes && !memcmp(old, &want, sizeof want);
    if (cached)
        memcpy(buf, old, bytes);
    free(old);
    r->ref_t = (double *)(void *)(buf + sizeof want);
    r->ref_v = r->ref_t + nt;
    if (!cached) {
        if (pref_reference(r->m, &r->pt, r->MB, r->tokens, r->targets, r->weights, r->ref_t) ||
            (r->pv.n && pref_reference(r->m, &r->pv, r->MB, r->tokens, r->targets, r->weights, r->ref_v)))
            fail(r, "the reference's log-probabilities: forward failed");
        memcpy(buf, &want, sizeof want);
        if (r->d.rank == 0 && trn_atomic_write(path, buf, bytes, r->err, sizeof r->err))
            fail(r, "%s", r->err);
    }
    r->ref_mem = buf;
    if (r->d.rank == 0) {
        fprintf(stderr, "aisle train: %zu %s", r->pt.n, r->pt.kind == PREF_DPO ? "DPO pairs" : "KTO rows");
        if (r->pt.kind == PREF_KTO)
            fprintf(stderr, " (%zu up, %zu down)", r->pt.n_up, r->pt.n_down);
        if (r->pt.skipped)
            fprintf(stderr, ", %zu skipped (over %d tokens)", r->pt.skipped, r->T + 1);
        if (r->pv.n)
            fprintf(stderr, "; %zu held out", r->pv.n);
        if (cached)
            fprintf(stderr, "; the reference's scores from %s\n", path);
        else
            fprintf(stderr, "; the reference scored in %.1f s (kept in %s)\n", cli_now() - t0, path);
    }
}

static void save_ckpt(struct run *r)
{
    if (r->d.rank != 0)
        return;
    char path[PATHMAX + 64];
    char *cfg = config_text(&r->o);
    if (!cfg)
        fail(r, "out of memory");
    out_path(path, sizeof path, r, "ckpt.bin");
    if (ckpt_save(path, r->m, &r->st, cfg, r->tok_bytes, r->tok_len, r->err, sizeof r->err))
        fail(r, "checkpoint: %s", r->err);
    free(cfg);
}

static int have_gnuplot(void)
{
    const char *path = getenv("PATH");
    char buf[4096];
    while (path && *path) {
        const char *c = strchr(path, ':');
        size_t n = c ? (size_t)(c - path) : strlen(path);
        snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, path);
        if (access(buf, X_OK) == 0)
            return 1;
        path = c ? c + 1 : path + n;
    }
    return 0;
}

static void plot(struct run *r)
{
    char csv[PATHMAX + 64], png[PATHMAX + 64], tmp[PATHMAX + 80];
    out_path(csv, sizeof csv, r, "log.csv");
    out_path(png, sizeof png, r, "loss.png");
    if (!have_gnuplot()) {
        fprintf(stderr, "aisle train: warning: gnuplot not found (install gnuplot-nox); no %s\n", png);
        return;
    }
    snprintf(tmp, sizeof tmp, "%s.tmp.png", png);
    /* gnuplot warns about validation columns still empty early in a run; its
     * failures show as a missing PNG and the status, reported below */
    FILE *g = popen("gnuplot 2>/dev/null", "w");
    if (!g) {
        fprintf(stderr, "aisle train: warning: cannot run gnuplot; no %s\n", png);
        return;
    }
    fprintf(g,
            "set terminal pngcairo size 1000,600 noenhanced\n"
            "set output '%s'\n"
            "set datafile separator ','\n"
            "set key outside right\n"
            "set xlabel 'step'\nset ylabel 'loss (nats/token)'\nset grid\n"
            "set title 'aisle train: %s'\n"
            "plot '%s' using 1:3 with lines lw 1 title 'train'",
            tmp, r->o.out, csv);
    for (int i = 0; i < r->data.n_src; i++)
        fprintf(g, ", '' using 1:%d with linespoints pt 7 ps 0.6 title 'val %s'", 8 + i, r->data.names[i]);
    if (r->prefs && r->pv.n)
        fprintf(g, ", '' using 1:10 with linespoints pt 7 ps 0.6 title 'val'");
    fputc('\n', g);
    int rc = pclose(g);
    struct stat st;
    if (rc != 0 || stat(tmp, &st) != 0 || st.st_size == 0 || rename(tmp, png) != 0) {
        unlink(tmp);
        fprintf(stderr, "aisle train: warning: gnuplot failed (status %d); no %s\n", rc, png);
    }
}

static void export_models(struct run *r)
{
    struct gguf *tg;
    struct tok *t;
    if (gguf_open_mem(&tg, r->tok_bytes, r->tok_len, r->err, sizeof r->err) ||
        tok_load_gguf(&t, tg, r->err, sizeof r->err))
        fail(r, "the tokenizer: %s", r->err);
    static const struct {
        const char *file;
        enum ggml_type type;
    } outs[2] = {{"model.gguf", GGML_TYPE_F32}, {"model-q8_0.gguf", GGML_TYPE_Q8_0}};
    for (int i = 0; i < 2; i++) {
        char path[PATHMAX + 64];
        out_path(path, sizeof path, r, outs[i].file);
        struct gguf_writer *w = gguf_writer_new();
        int rc = w ? ltr_export_gguf_as(r->m, w, r->o.name[0] ? r->o.name : "aisle", outs[i].type) : AISLE_ENOMEM;
        rc = rc ? rc : tok_save_gguf(t, w);
        if (rc)
            fail(r, "building %s: %s", path, aisle_strerror(rc));
        if (gguf_writer_write(w, path, r->err, sizeof r->err))
            fail(r, "%s", r->err);
        gguf_writer_free(w);
        printf("wrote %s\n", path);
    }
    tok_free(t);
    gguf_close(tg);
}

/* Shape defaults: 8/3 C rounded up to a multiple of 32 for the FFN. */
static void defaults(struct opts *o)
{
    memset(o, 0, sizeof *o);
    o->dim = 256;
    o->layers = 4;
    o->heads = 4;
    o->ctx = 256;
    o->tied = 1;
    o->batch = 8;
    o->lr = 1e-3;
    o->min_lr = -1;
    o->warmup = 100;
    o->weight_decay = 0.1;
    o->clip = 1.0;
    o->beta1 = 0.9;
    o->beta2 = 0.95;
    o->init_std = 0.02;
    o->eval_every = 100;
    o->eval_tokens = 65536;
    o->ckpt_every = 500;
    o->log_every = 10;
    o->seed = 1;
    o->do_export = 1;
    o->plot = 1;
    o->beta = 0.1;
    o->kto_d = 1;
    o->kto_u = 1;
}

static void parse_args(struct run *r, int argc, char **argv)
{
    struct opts *o = &r->o;
    const char *config = NULL, *resume = NULL;
    /* First pass: --config, --resume and --help, which decide the base. */
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            exit(0);
        }
        if ((!strcmp(argv[i], "--config") || !strcmp(argv[i], "--resume")) && i + 1 < argc) {
            if (argv[i][2] == 'c')
                config = argv[i + 1];
            else
                resume = argv[i + 1];
            i++;
        } else if (!strncmp(argv[i], "--config=", 9))
            config = argv[i] + 9;
        else if (!strncmp(argv[i], "--resume=", 9))
            resume = argv[i] + 9;
    }
    defaults(o);
    struct opts base;
    if (resume) {
        struct ckpt *c;
        if (ckpt_open(&c, resume, r->err, sizeof r->err))
            fail(r, "%s", r->err);
        if (parse_config_text(o, c->config, resume, r->err, sizeof r->err))
            fail(r, "%s", r->err);
        ckpt_close(c);
        snprintf(o->resume, sizeof o->resume, "%s", resume);
    }
    base = *o;
    if (config) {
        char *text = read_small_file(config, 1u << 20, NULL);
        if (!text)
            fail(r, "--config %s: cannot read (or over 1 MiB)", config);
        if (parse_config_text(o, text, config, r->err, sizeof r->err))
            fail(r, "%s", r->err);
        free(text);
    }
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *val;
        if (strncmp(a, "--", 2))
            cli_usage_error("train", "unexpected argument '%s'", a);
        const char *eq = strchr(a + 2, '=');
        size_t n = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
        if ((n == 6 && !strncmp(a + 2, "config", 6)) || (n == 6 && !strncmp(a + 2, "resume", 6))) {
            i += !eq;
            continue;
        }
        const struct opt *op = find_opt(a + 2, n);
        if (!op)
            cli_usage_error("train", "unknown option '%s'", a);
        if (eq)
            val = eq + 1;
        else if (i + 1 < argc)
            val = argv[++i];
        else
            cli_usage_error("train", "option '%s' needs a value", a);
        char e[256];
        if (set_opt(o, op, val, e, sizeof e))
            cli_usage_error("train", "%s", e);
    }
    if (resume) /* a run's identity stays: only session options may differ */
        for (size_t i = 0; i < NOPTS; i++) {
            const struct opt *op = &table[i];
            size_t sz = op->kind == K_STR ? (op->off == O(mix) ? 512 : op->off == O(name) ? 128 : PATHMAX)
                        : op->kind == K_SFT ? sizeof o->sft
                        : op->kind == K_DBL ? sizeof(double)
                        : op->kind == K_LL  ? sizeof(long long)
                        : op->kind == K_U64 ? sizeof(unsigned long long)
                                            : sizeof(long);
            if (!op->session && memcmp((char *)o + op->off, (char *)&base + op->off, sz))
                cli_usage_error("train", "--%s cannot change on --resume (only the options marked * in --help)",
                                op->name);
        }
}

static void setup(struct run *r)
{
    struct opts *o = &r->o;
    if (!o->out[0])
        cli_usage_error("train", "--out is required");
    r->prefs = o->prefs[0] != 0;
    if (!o->corpus[0] && !o->n_sft && !r->prefs)
        cli_usage_error("train", "give --corpus DIR and/or --sft SHARD, or --prefs ROWS");
    if (r->prefs && (o->corpus[0] || o->n_sft))
        cli_usage_error("train", "--prefs trains on preference rows alone: no --corpus or --sft with it");
    if (r->prefs && !o->init[0])
        cli_usage_error("train", "--prefs needs --init MODEL.gguf (the model to tune, also the frozen reference)");
    if (r->prefs && !o->steps)
        cli_usage_error("train", "--prefs counts --steps (not --tokens)");
    if (!r->prefs && o->pref_val[0])
        cli_usage_error("train", "--pref-val goes with --prefs");
    if (!o->steps && !o->tokens)
        cli_usage_error("train", "give --steps or --tokens");
    r->pp.beta = o->beta;
    r->pp.kto_desirable = o->kto_d;
    r->pp.kto_undesirable = o->kto_u;
    r->pval[0] = r->pval[1] = r->pval[2] = NAN;
    if (r->d.rank == 0 && mkdir(o->out, 0755) != 0 && errno != EEXIST)
        fail(r, "%s: %s", o->out, strerror(errno));
    if (dist_barrier(&r->d))
        fail(r, "MPI barrier failed");

    if (o->corpus[0] && tdata_open(&r->data, o->corpus, o->mix, r->err, sizeof r->err))
        fail(r, "%s", r->err);
    for (int i = 0; i < o->n_sft; i++) {
        char path[PATHMAX];
        snprintf(path, sizeof path, "%s", o->sft[i]);
        double w = 1;
        char *at = strrchr(path, '@');
        if (at) {
            char *end;
            w = strtod(at + 1, &end);
            if (*end || !(w > 0))
                fail(r, "--sft %s: bad weight after '@'", o->sft[i]);
            *at = 0;
        }
        if (tdata_add_sft(&r->data, path, w, r->err, sizeof r->err))
            fail(r, "%s", r->err);
    }
    r->data.rng = o->seed ^ 0x5eed5eed5eed5eedull;

    r->T = (int)o->ctx;
    r->B = (int)o->batch;
    if (r->B % r->d.size)
        fail(r, "--batch %d is not a multiple of the %d processes", r->B, r->d.size);
    r->rows = r->B / r->d.size;
    r->MB = o->micro_batch ? (int)o->micro_batch : r->rows;
    if (r->rows % r->MB)
        fail(r, "this process's %d rows (batch / processes) are not a multiple of --micro-batch %d", r->rows, r->MB);
    r->n_micro = r->rows / r->MB;
    r->total_steps = o->steps ? o->steps : (long)((o->tokens + (long long)r->B * r->T - 1) / ((long long)r->B * r->T));
    if (o->min_lr < 0)
        o->min_lr = o->lr / 10;
    if (!r->prefs && tdata_fits(&r->data, r->T, r->err, sizeof r->err))
        fail(r, "%s", r->err);

    struct gguf *ig = NULL;
    if (o->init[0]) {
        if (gguf_open(&ig, o->init, r->err, sizeof r->err) || ltr_config_from_gguf(ig, &r->cfg, r->err, sizeof r->err))
            fail(r, "--init %s: %s", o->init, r->err);
        if (r->cfg.max_ctx < r->T)
            r->cfg.max_ctx = r->T;
    } else {
        struct ltr_config *c = &r->cfg;
        memset(c, 0, sizeof *c);
        c->V = (int)r->data.vocab_size;
        c->C = (int)o->dim;
        c->L = (int)o->layers;
        c->NH = (int)o->heads;
        c->NKV = (int)(o->kv_heads ? o->kv_heads : o->heads);
        c->F = (int)(o->ffn ? o->ffn : (8 * o->dim / 3 + 31) / 32 * 32);
        c->max_ctx = r->T;
        c->tied = (int)o->tied;
        if (o->dim % o->heads || o->heads % c->NKV)
            fail(r, "--dim must be a multiple of --heads, and --heads of --kv-heads");
    }
    if ((uint32_t)r->cfg.V < r->data.vocab_size)
        fail(r, "the model's vocabulary (%d) is smaller than the data's (%u)", r->cfg.V, r->data.vocab_size);
    int threads = (int)o->threads;
    if (threads <= 0) {
        long c = sysconf(_SC_NPROCESSORS_ONLN);
        threads = (int)((c > 0 ? c : 1) / r->d.size);
        threads = threads < 1 ? 1 : threads;
    }
    tensor_blas_set_threads(threads);
    int rows = r->prefs ? 2 * r->MB : r->MB; /* --prefs: two sequences per example */
    int rc = ltr_model_new(&r->m, &r->cfg, rows, r->T, threads);
    if (rc)
        fail(r, "model: %s", aisle_strerror(rc));
    size_t cells = (size_t)(r->prefs ? 2 * r->rows : r->rows) * r->T;
    if (cells < (size_t)rows * r->T)
        cells = (size_t)rows * r->T;
    r->tokens = malloc(cells * sizeof *r->tokens);
    r->targets = malloc(cells * sizeof *r->targets);
    r->weights = malloc(cells * sizeof *r->weights);
    if (!r->tokens || !r->targets || !r->weights)
        fail(r, "out of memory");
    ltr_init(r->m, o->seed, (float)o->init_std);
    if (ig) {
        if (ltr_load_gguf(r->m, ig, r->err, sizeof r->err))
            fail(r, "--init %s: %s", o->init, r->err);
        if (r->prefs) /* before a checkpoint replaces the weights: the reference is --init's */
            pref_setup(r, ig);
        gguf_close(ig);
    }
    if (o->resume[0]) {
        struct ckpt *c;
        if (ckpt_open(&c, o->resume, r->err, sizeof r->err))
            fail(r, "%s", r->err);
        if (ckpt_restore(c, r->m))
            fail(r, "%s: its %llu parameters do not fit this model's %zu", o->resume,
                 (unsigned long long)c->n_params, r->m->n_params);
        r->st = c->st;
        r->data.rng = c->st.rng;
        r->tok_bytes = malloc(c->tok_len ? c->tok_len : 1);
        if (!r->tok_bytes)
            fail(r, "out of memory");
        memcpy(r->tok_bytes, c->tok, c->tok_len);
        r->tok_len = c->tok_len;
        ckpt_close(c);
    } else {
        load_tokenizer(r);
    }
    r->vloss = malloc(sizeof *r->vloss * (size_t)(r->data.n_src + 1));
    if (!r->vloss)
        fail(r, "out of memory");
    if (r->d.rank == 0)
        csv_open(r, o->resume[0] != 0);
}

int cmd_train(int argc, char **argv)
{
    struct run *r = calloc(1, sizeof *r);
    if (!r)
        cli_die("out of memory");
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (dist_init(&r->d, r->err, sizeof r->err))
        cli_die("%s", r->err);
    parse_args(r, argc, argv);
    setup(r);
    const struct opts *o = &r->o;
    struct ltr_adamw opt = {0, (float)o->beta1, (float)o->beta2, 1e-8f, (float)o->weight_decay};
    r->session_start = cli_now();
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);
    double elapsed0 = r->st.elapsed, ema = 0;
    long last = r->total_steps;
    if (r->d.rank == 0)
        fprintf(stderr,
                "aisle train: %zu parameters (C %d, L %d, NH %d, NKV %d, F %d, V %d%s), batch %d %s %d tokens "
                "(%d process%s x %d micro-batches of %d), %ld steps from step %llu, %d threads\n",
                r->m->n_params, r->cfg.C, r->cfg.L, r->cfg.NH, r->cfg.NKV, r->cfg.F, r->cfg.V,
                r->cfg.tied ? ", tied" : "", r->B,
                r->prefs ? (r->pt.kind == PREF_DPO ? "pairs of sequences up to" : "rated rows (and a mismatched "
                                                                                  "one each) up to")
                         : "x",
                r->T + (r->prefs ? 1 : 0), r->d.size, r->d.size == 1 ? "" : "es", r->n_micro, r->MB, last,
                (unsigned long long)r->st.step, tensor_blas_threads());
    int stop = 0;
    size_t *pidx = r->prefs ? malloc((size_t)(r->B > r->MB ? r->B : r->MB) * sizeof *pidx) : NULL;
    if (r->prefs && !pidx)
        fail(r, "out of memory");
    while ((long)r->st.step < last && !stop) {
        double t0 = cli_now();
        ltr_zero_grad(r->m);
        double lsum[5] = {0}; /* loss; with --prefs also correct, margin, examples, tokens */
        if (r->prefs) {
            struct pref_stats ps = {0};
            pref_step(r, pidx, &ps);
            lsum[0] = ps.loss, lsum[1] = ps.correct, lsum[2] = ps.margin, lsum[3] = ps.n, lsum[4] = ps.tokens;
        } else
            tdata_next_batch(&r->data, r->B, r->T, r->d.rank * r->rows, r->rows, r->tokens, r->targets, r->weights);
        for (int k = 0; !r->prefs && k < r->n_micro; k++) {
            size_t at = (size_t)k * r->MB * r->T;
            float loss;
            int rc = ltr_forward(r->m, r->tokens + at, r->targets + at, r->weights + at, r->MB, r->T, &loss);
            if (rc)
                fail(r, "forward at step %llu: %s", (unsigned long long)r->st.step + 1, aisle_strerror(rc));
            if (ltr_backward(r->m, 1.0f / (float)(r->n_micro * r->d.size)))
                fail(r, "backward failed");
            lsum[0] += loss;
        }
        if (dist_sum_f32(&r->d, r->m->grads_mem, r->m->n_params) || dist_sum_f64(&r->d, lsum, r->prefs ? 5 : 1))
            fail(r, "MPI allreduce failed");
        double loss = r->prefs ? lsum[0] / lsum[3] : lsum[0] / (r->n_micro * r->d.size);
        double step_tokens = r->prefs ? lsum[4] : (double)r->B * r->T;
        float norm = ltr_clip_grad_norm(r->m, (float)o->clip);
        opt.lr = ltr_lr_schedule((int)r->st.step, (int)o->warmup, (int)last, (float)o->lr, (float)o->min_lr);
        ltr_adamw_step(r->m, &opt);
        r->st.step++;
        r->st.tokens += (uint64_t)step_tokens;
        int evals = (r->data.n_src > 0 || r->pv.n > 0) &&
                    (r->st.step == (uint64_t)last || (o->eval_every && r->st.step % (uint64_t)o->eval_every == 0));
        double dt = cli_now() - t0; /* the step alone: validation is not training throughput */
        if (evals && r->prefs)
            pref_evaluate(r, pidx);
        else if (evals)
            evaluate(r);
        r->st.elapsed = elapsed0 + (cli_now() - r->session_start);
        ema = ema ? 0.9 * ema + 0.1 * dt : dt;
        double tps = step_tokens / dt;
        if (!isfinite(loss))
            fail(r, "the loss is %g at step %llu (lower --lr?)", loss, (unsigned long long)r->st.step);
        int stop_now = (o->stop_at && r->st.step >= (uint64_t)o->stop_at) ||
                       (o->time_limit > 0 && cli_now() - r->session_start >= o->time_limit) || stop_signal;
        if (dist_bcast(&r->d, &stop_now, sizeof stop_now))
            fail(r, "MPI broadcast failed");
        stop = stop_now && r->st.step < (uint64_t)last;
        if (r->d.rank == 0) {
            fprintf(r->csv, "%llu,%llu,%.9g,%.9g,%.9g,%.1f,%.3f", (unsigned long long)r->st.step,
                    (unsigned long long)r->st.tokens, loss, opt.lr, norm, tps, r->st.elapsed);
            if (r->prefs) {
                fprintf(r->csv, ",%.6g,%.6g", lsum[1] / lsum[3], lsum[2] / lsum[3]);
                if (evals)
                    fprintf(r->csv, ",%.9g,%.6g,%.6g", r->pval[0], r->pval[1], r->pval[2]);
                else
                    fputs(",,,", r->csv);
            }
            for (int s = 0; s < r->data.n_src; s++) {
                if (evals && !isnan(r->vloss[s]))
                    fprintf(r->csv, ",%.9g", r->vloss[s]);
                else
                    fputc(',', r->csv);
            }
            fputc('\n', r->csv);
            fflush(r->csv);
            if (r->st.step % (uint64_t)o->log_every == 0 || r->st.step == (uint64_t)last || evals || stop) {
                char el[32], eta[32];
                hms(el, sizeof el, r->st.elapsed);
                hms(eta, sizeof eta, ema * (double)(last - (long)r->st.step));
                fprintf(stderr, "step %llu/%ld | loss %.4f | lr %.2e | %.0f tok/s | %s elapsed | ETA %s",
                        (unsigned long long)r->st.step, last, loss, opt.lr, tps, el, eta);
                for (int s = 0; evals && s < r->data.n_src; s++)
                    fprintf(stderr, " | val %s %.4f", r->data.names[s], r->vloss[s]);
                if (r->prefs)
                    fprintf(stderr, " | acc %.3f | margin %.3f", lsum[1] / lsum[3], lsum[2] / lsum[3]);
                if (r->prefs && evals)
                    fprintf(stderr, " | val loss %.4f acc %.3f margin %.3f", r->pval[0], r->pval[1], r->pval[2]);
                fputc('\n', stderr);
            }
        }
        if (!stop && o->ckpt_every && r->st.step % (uint64_t)o->ckpt_every == 0 && r->st.step < (uint64_t)last) {
            r->st.rng = r->data.rng;
            save_ckpt(r);
        }
    }
    r->st.rng = r->data.rng;
    save_ckpt(r);
    if (r->d.rank == 0) {
        fclose(r->csv);
        if (o->plot)
            plot(r);
        if (stop)
            printf("stopped at step %llu of %ld; continue with: aisle train --resume %s/ckpt.bin\n",
                   (unsigned long long)r->st.step, last, o->out);
        else if (o->do_export)
            export_models(r);
    }
    ltr_model_free(r->m);
    tdata_close(&r->data);
    pref_free(&r->pt);
    pref_free(&r->pv);
    free(r->ref_mem);
    free(pidx);
    free(r->tok_bytes);
    free(r->tokens);
    free(r->targets);
    free(r->weights);
    free(r->vloss);
    dist_finalize(&r->d);
    free(r);
    return 0;
}
