/*
 * answers.h — the shopper chat's answers and the shoppers' votes on them, in
 * their own SQLite file (aisle serve --feedback-db, docs/CHAT.md "Feedback"):
 * every answer with the context that made it (the request's messages, the
 * evidence with its citation ids and as_of, the exact prompt text, the raw
 * model output, the events shown, sampling params and seed, usage and
 * timings), and one thumbs up/down per answer, turned into KTO rows and DPO
 * pairs by answers_export.
 *
 * Design: a separate file, not a migration of the catalog store: the store is
 * opened read-only by the retrieval workers and rebuilt by bulk loads, while
 * answers are small durable writes that must outlive any rebuild (and can be
 * backed up, moved or deleted on their own). Writes go through one writer
 * thread with a bounded queue and its own connection (one connection per
 * thread), in WAL with synchronous=FULL: a job's done callback runs after its
 * transaction committed, so an answer id or a vote that the server has
 * acknowledged survives a kill -9. A vote replaces the answer's previous vote
 * (feedback.updated_at changes) and every vote is also kept in feedback_log.
 *
 * Ownership: struct answers owns its connection and thread. A job and the
 * strings it points to are the caller's until done is called.
 *
 * THREAD SAFETY: answers_submit and answers_close from any thread; done runs
 * on the writer thread. The synchronous functions (answers_put,
 * answers_vote, answers_export, answers_stats) use the handle's own
 * connection: call them only on a handle opened without the writer.
 */
#ifndef AISLE_STORE_ANSWERS_H
#define AISLE_STORE_ANSWERS_H

#include <stdio.h>

#define ANSWERS_ID_LEN 32          /* hex characters of an answer id (128 random bits) */
#define ANSWERS_MAX_COMMENT 1000   /* bytes of a vote's comment */
#define ANSWERS_MAX_QUEUE 256      /* jobs waiting for the writer before submit says AISLE_EBUSY */

/* One answer with its full context. Strings are NUL-terminated; the JSON
 * ones hold valid JSON text; NULL where optional. */
struct answer_rec {
    char id[ANSWERS_ID_LEN + 1]; /* filled by answers_new_id */
    const char *conversation_id, *product_id, *postcode; /* optional */
    const char *model;       /* the model's name */
    const char *model_meta;  /* JSON: file, size, architecture ... (optional) */
    const char *messages;    /* JSON array [{"role","content"}...] */
    const char *evidence;    /* JSON array [{"n","id","source","product_id","text","as_of","stale"}...] */
    const char *prompt;      /* the exact prompt text (special tokens as their text) */
    int prompt_tokens;
    const char *output;      /* the raw model output, markup included */
    const char *events;      /* the SSE events sent (text, citation, card, compare, suggestions) */
    const char *sampling;    /* JSON: temperature, top_p, repeat_penalty, penalty_last_n, seed, max_tokens */
    const char *usage;       /* JSON: the done event (usage, timings, counts) */
};

/* A job for the writer: store an answer, or record a vote (+1/-1). */
enum answers_job_kind { ANSWERS_JOB_ANSWER, ANSWERS_JOB_VOTE };

struct answers_job {
    enum answers_job_kind kind;
    const struct answer_rec *rec;  /* ANSWER */
    const char *answer_id;         /* VOTE */
    int rating;                    /* VOTE: +1 or -1 */
    const char *comment;           /* VOTE: NULL or <= ANSWERS_MAX_COMMENT bytes */
    int rc;                        /* set before done: 0, AISLE_ENOTFOUND (no such answer), AISLE_EDB */
    char err[256];
    void (*done)(void *ctx);       /* on the writer thread, after the commit */
    void *ctx;
    struct answers_job *next;      /* the writer's */
};

struct answers;

/* Open (creating it and its tables) the database at path. writer != 0 starts
 * the writer thread (answers_submit); otherwise the synchronous functions
 * work on the caller's thread. read_only opens an existing file without
 * writing (export, stats). 0, or AISLE_EDB (also: a file of another schema
 * version) / AISLE_ENOMEM with detail in err. */
int answers_open(struct answers **out, const char *path, int writer, int read_only, char *err, size_t errlen);
/* Refuse new jobs, finish the queued ones, join the writer, close. NULL is a no-op. */
void answers_close(struct answers *a);

/* A fresh random id (32 lowercase hex characters) into id. */
void answers_new_id(char id[ANSWERS_ID_LEN + 1]);

/* Queue a job: 0, or AISLE_EBUSY (the queue is full or the writer stopped). */
int answers_submit(struct answers *a, struct answers_job *j);

/* Synchronous writes (no writer thread): 0, AISLE_ENOTFOUND (vote on an
 * unknown answer), AISLE_EINVAL, AISLE_EDB; detail in err. */
int answers_put(struct answers *a, const struct answer_rec *r, char *err, size_t errlen);
int answers_vote(struct answers *a, const char *answer_id, int rating, const char *comment, char *err,
                 size_t errlen);

/* The current vote on an answer: 0 with *rating (+1/-1, 0 when none), or
 * AISLE_ENOTFOUND / AISLE_EDB. */
int answers_get_vote(struct answers *a, const char *answer_id, int *rating);

/* Which answers answers_delete removes: all the given criteria hold (at
 * least one is given). */
struct answers_filter {
    const char *answer_id;       /* this answer */
    const char *conversation_id; /* every answer of this conversation */
    const char *before;          /* created before this UTC time: YYYY-MM-DD, or with THH:MM[:SS[.mmm]][Z] */
};

/* Delete the matching answers with their votes (feedback and feedback_log)
 * in one transaction. The bytes are overwritten (secure_delete) and the WAL
 * is checkpointed and truncated, so no copy of a deleted answer stays in the
 * files; when another connection holds the WAL open, *wal_kept is set (its
 * frames go at that connection's next checkpoint). dry_run counts without
 * deleting. *n_answers and *n_votes (votes in feedback_log) get the counts.
 * 0, AISLE_EINVAL (no criterion, a malformed time; detail in err), AISLE_EDB.
 * Synchronous: a handle opened without the writer. */
int answers_delete(struct answers *a, const struct answers_filter *f, int dry_run, long *n_answers, long *n_votes,
                   int *wal_kept, char *err, size_t errlen);

/* Retention: the writer deletes answers older than days (and their votes) as
 * answers_delete does, when it starts and then every hour; 0 (the default)
 * keeps everything. Call right after answers_open, before any job. */
void answers_set_retention(struct answers *a, int days);

/* The UTC time days ago, in the answers' created_at format, into out. */
void answers_days_ago(char out[32], double days);

/* Write JSON Lines for preference tuning to f. kto: one row per voted answer
 * {"prompt","completion","label","answer_id","created_at"}; dpo: for each
 * prompt text that has both an up and a down answer, pairs {"prompt",
 * "chosen","rejected",...} (each up answer with each down answer of that
 * prompt, oldest first). *n_rows gets the count. 0, AISLE_EDB, AISLE_EIO. */
int answers_export(struct answers *a, int dpo, FILE *f, long *n_rows, char *err, size_t errlen);

/* Counts as one JSON object (freed by the caller): answers, voted, up, down,
 * up_share, and the same by model. NULL with err on failure. */
char *answers_stats(struct answers *a, char *err, size_t errlen);

#endif
