/*
 * answers.c — the answers/feedback database and its writer thread
 * (answers.h). Invariants: only the writer thread touches the connection of a
 * handle opened with a writer; a job's done runs after its COMMIT returned
 * (WAL, synchronous=FULL), or with rc set when the transaction was rolled back.
 */
#include "store/answers.h"

#include "core/error.h"

#include <jansson.h>
#include <pthread.h>
#include <sqlite3.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

/* Version 1 of the answers database (PRAGMA user_version). */
static const char answers_schema[] =
    "CREATE TABLE IF NOT EXISTS answers(\n"
    "  id TEXT PRIMARY KEY,            -- 32 hex characters, random\n"
    "  created_at TEXT NOT NULL,       -- UTC, ISO 8601 with milliseconds\n"
    "  conversation_id TEXT,\n"
    "  model TEXT NOT NULL,\n"
    "  model_meta TEXT,                -- JSON\n"
    "  messages TEXT NOT NULL,         -- JSON: the request's messages\n"
    "  product_id TEXT,\n"
    "  postcode TEXT,\n"
    "  evidence TEXT NOT NULL,         -- JSON: passages with citation ids and as_of\n"
    "  prompt TEXT NOT NULL,           -- the exact prompt text given to the model\n"
    "  prompt_tokens INTEGER NOT NULL,\n"
    "  prompt_hash INTEGER NOT NULL,   -- FNV-1a 64 of prompt: DPO pairs join on it (indexed)\n"
    "  output TEXT NOT NULL,           -- the raw model output\n"
    "  events TEXT NOT NULL,           -- the SSE events shown (text, citations, cards)\n"
    "  sampling TEXT NOT NULL,         -- JSON: temperature, top_p, seed, max_tokens\n"
    "  usage TEXT NOT NULL             -- JSON: the done event\n"
    ");\n"
    "CREATE INDEX IF NOT EXISTS answers_conversation ON answers(conversation_id);\n"
    "CREATE INDEX IF NOT EXISTS answers_prompt ON answers(prompt_hash);\n"
    "CREATE TABLE IF NOT EXISTS feedback(\n"
    "  answer_id TEXT PRIMARY KEY REFERENCES answers(id),\n"
    "  rating INTEGER NOT NULL CHECK (rating IN (-1, 1)),\n"
    "  comment TEXT,\n"
    "  created_at TEXT NOT NULL,       -- the first vote\n"
    "  updated_at TEXT NOT NULL        -- the vote that holds now\n"
    ");\n"
    "CREATE TABLE IF NOT EXISTS feedback_log(  -- every vote, for audit\n"
    "  id INTEGER PRIMARY KEY,\n"
    "  answer_id TEXT NOT NULL,\n"
    "  rating INTEGER NOT NULL,\n"
    "  comment TEXT,\n"
    "  created_at TEXT NOT NULL\n"
    ");\n"
    "PRAGMA user_version = 1;\n";

struct answers {
    sqlite3 *db;
    int writer;
    pthread_t th;
    pthread_mutex_t mu;
    pthread_cond_t cv;
    struct answers_job *head, *tail;
    size_t n_queued;
    int closing;
    int retention_days; /* 0: keep everything */
};

static void iso_at(char out[32], struct timespec ts)
{
    struct tm tm;
    gmtime_r(&ts.tv_sec, &tm);
    size_t n = strftime(out, 32, "%Y-%m-%dT%H:%M:%S", &tm);
    snprintf(out + n, 32 - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

static void now_iso(char out[32])
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    iso_at(out, ts);
}

void answers_days_ago(char out[32], double days)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec -= (time_t)(days * 86400.0);
    iso_at(out, ts);
}

void answers_new_id(char id[ANSWERS_ID_LEN + 1])
{
    unsigned char r[16];
    size_t got = 0;
    while (got < sizeof(r)) {
        ssize_t n = getrandom(r + got, sizeof(r) - got, 0);
        if (n <= 0)
            break;
        got += (size_t)n;
    }
    if (got < sizeof(r)) { /* no getrandom: time and address bits, still unique enough per process */
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        unsigned long long x = (unsigned long long)ts.tv_nsec ^ ((unsigned long long)ts.tv_sec << 30) ^
                               (unsigned long long)(uintptr_t)r;
        for (size_t i = got; i < sizeof(r); i++, x = x * 6364136223846793005ULL + 1442695040888963407ULL)
            r[i] = (unsigned char)(x >> 56);
    }
    static const char hex[] = "0123456789abcdef";
    for (size_t i = 0; i < sizeof(r); i++) {
        id[2 * i] = hex[r[i] >> 4];
        id[2 * i + 1] = hex[r[i] & 15];
    }
    id[ANSWERS_ID_LEN] = 0;
}

static int db_fail(sqlite3 *db, char *err, size_t errlen, const char *what)
{
    if (err)
        snprintf(err, errlen, "answers database: %s: %s", what, sqlite3_errmsg(db));
    return AISLE_EDB;
}

static void bind_text(sqlite3_stmt *st, int i, const char *s)
{
    if (s)
        sqlite3_bind_text(st, i, s, -1, SQLITE_STATIC);
    else
        sqlite3_bind_null(st, i);
}

/* FNV-1a 64 of s, as SQLite's signed integer: equal prompts, equal hashes. */
static sqlite3_int64 prompt_hash(const char *s)
{
    uint64_t h = 14695981039346656037ULL;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 1099511628211ULL;
    return (sqlite3_int64)h;
}

int answers_put(struct answers *a, const struct answer_rec *r, char *err, size_t errlen)
{
    if (!r->model || !r->messages || !r->evidence || !r->prompt || !r->output || !r->events || !r->sampling ||
        !r->usage) {
        snprintf(err, errlen, "answers database: an answer record misses a required field");
        return AISLE_EINVAL;
    }
    char at[32];
    now_iso(at);
    sqlite3_stmt *st = NULL;
    int rc = sqlite3_prepare_v2(a->db,
                                "INSERT INTO answers(id, created_at, conversation_id, model, model_meta, messages,"
                                " product_id, postcode, evidence, prompt, prompt_tokens, output, events, sampling,"
                                " usage, prompt_hash) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                                -1, &st, NULL);
    if (rc != SQLITE_OK)
        return db_fail(a->db, err, errlen, "prepare the answer insert");
    const char *v[] = {r->id,       at,         r->conversation_id, r->model,    r->model_meta,
                       r->messages, r->product_id, r->postcode,    r->evidence, r->prompt};
    for (int i = 0; i < 10; i++)
        bind_text(st, i + 1, v[i]);
    sqlite3_bind_int(st, 11, r->prompt_tokens);
    bind_text(st, 12, r->output);
    bind_text(st, 13, r->events);
    bind_text(st, 14, r->sampling);
    bind_text(st, 15, r->usage);
    sqlite3_bind_int64(st, 16, prompt_hash(r->prompt));
    rc = sqlite3_step(st) == SQLITE_DONE ? 0 : db_fail(a->db, err, errlen, "store the answer");
    sqlite3_finalize(st);
    return rc; /* autocommit: one durable transaction */
}

static int exec(struct answers *a, const char *sql, char *err, size_t errlen)
{
    return sqlite3_exec(a->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : db_fail(a->db, err, errlen, sql);
}

int answers_vote(struct answers *a, const char *answer_id, int rating, const char *comment, char *err,
                 size_t errlen)
{
    if ((rating != 1 && rating != -1) || !answer_id || (comment && strlen(comment) > ANSWERS_MAX_COMMENT)) {
        snprintf(err, errlen, "a vote is +1 or -1 with a comment of at most %d bytes", ANSWERS_MAX_COMMENT);
        return AISLE_EINVAL;
    }
    char at[32];
    now_iso(at);
    sqlite3_stmt *st = NULL;
    int rc = exec(a, "BEGIN IMMEDIATE", err, errlen);
    if (rc)
        return rc;
    if (sqlite3_prepare_v2(a->db, "SELECT 1 FROM answers WHERE id = ?", -1, &st, NULL) != SQLITE_OK) {
        rc = db_fail(a->db, err, errlen, "prepare the answer lookup");
        goto fail;
    }
    bind_text(st, 1, answer_id);
    int step = sqlite3_step(st);
    sqlite3_finalize(st);
    st = NULL;
    if (step == SQLITE_DONE) {
        snprintf(err, errlen, "no answer has id \"%.64s\"", answer_id);
        rc = AISLE_ENOTFOUND;
        goto fail;
    }
    if (step != SQLITE_ROW) {
        rc = db_fail(a->db, err, errlen, "look the answer up");
        goto fail;
    }
    static const char *const sql[] = {
        "INSERT INTO feedback(answer_id, rating, comment, created_at, updated_at) VALUES (?1, ?2, ?3, ?4, ?4)"
        " ON CONFLICT(answer_id) DO UPDATE SET rating = excluded.rating, comment = excluded.comment,"
        " updated_at = excluded.updated_at",
        "INSERT INTO feedback_log(answer_id, rating, comment, created_at) VALUES (?1, ?2, ?3, ?4)"};
    for (int i = 0; i < 2; i++) {
        if (sqlite3_prepare_v2(a->db, sql[i], -1, &st, NULL) != SQLITE_OK) {
            rc = db_fail(a->db, err, errlen, "prepare the vote");
            goto fail;
        }
        bind_text(st, 1, answer_id);
        sqlite3_bind_int(st, 2, rating);
        bind_text(st, 3, comment);
        bind_text(st, 4, at);
        step = sqlite3_step(st);
        sqlite3_finalize(st);
        st = NULL;
        if (step != SQLITE_DONE) {
            rc = db_fail(a->db, err, errlen, "record the vote");
            goto fail;
        }
    }
    return exec(a, "COMMIT", err, errlen);
fail:
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int answers_get_vote(struct answers *a, const char *answer_id, int *rating)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db,
                           "SELECT (SELECT rating FROM feedback WHERE answer_id = a.id) FROM answers a WHERE a.id = ?",
                           -1, &st, NULL) != SQLITE_OK)
        return AISLE_EDB;
    bind_text(st, 1, answer_id);
    int step = sqlite3_step(st), rc = step == SQLITE_ROW ? 0 : step == SQLITE_DONE ? AISLE_ENOTFOUND : AISLE_EDB;
    if (rc == 0)
        *rating = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    return rc;
}

/* The writer's retention pass: answers older than the retention, as
 * answers_delete removes them; a failure is reported, and tried again at the
 * next pass. */
static void prune(struct answers *a, int days)
{
    char before[32], err[256];
    answers_days_ago(before, days);
    struct answers_filter f = {.before = before};
    long n = 0, nv = 0;
    int kept = 0;
    if (answers_delete(a, &f, 0, &n, &nv, &kept, err, sizeof(err)))
        fprintf(stderr, "aisle: retention (%d days): %s\n", days, err);
    else if (n)
        fprintf(stderr, "aisle: retention: deleted %ld answers older than %d days (%ld votes)\n", n, days, nv);
}

static void *writer_main(void *arg)
{
    struct answers *a = arg;
    time_t next_prune = 0;
    pthread_mutex_lock(&a->mu);
    for (;;) {
        int days = a->retention_days;
        if (days && !a->closing && time(NULL) >= next_prune) { /* due, even when jobs keep coming */
            pthread_mutex_unlock(&a->mu);
            prune(a, days);
            next_prune = time(NULL) + 3600;
            pthread_mutex_lock(&a->mu);
            continue;
        }
        if (!a->head && !a->closing) {
            if (days) {
                struct timespec until = {.tv_sec = next_prune, .tv_nsec = 0};
                pthread_cond_timedwait(&a->cv, &a->mu, &until);
            } else
                pthread_cond_wait(&a->cv, &a->mu);
            continue;
        }
        struct answers_job *j = a->head;
        if (!j)
            break; /* closing and drained */
        a->head = j->next;
        if (!a->head)
            a->tail = NULL;
        a->n_queued--;
        pthread_mutex_unlock(&a->mu);
        j->err[0] = 0;
        j->rc = j->kind == ANSWERS_JOB_ANSWER ? answers_put(a, j->rec, j->err, sizeof(j->err))
                                              : answers_vote(a, j->answer_id, j->rating, j->comment, j->err,
                                                             sizeof(j->err));
        j->done(j->ctx); /* j may be gone after this */
        pthread_mutex_lock(&a->mu);
    }
    pthread_mutex_unlock(&a->mu);
    return NULL;
}

void answers_set_retention(struct answers *a, int days)
{
    pthread_mutex_lock(&a->mu);
    a->retention_days = days > 0 ? days : 0;
    pthread_cond_broadcast(&a->cv);
    pthread_mutex_unlock(&a->mu);
}

/* YYYY-MM-DD, optionally THH:MM, :SS, .mmm (1 to 3 digits), Z: 1 when valid. */
static int valid_time(const char *s)
{
    static const char pat[] = "dddd-dd-ddTdd:dd:dd";
    size_t n = strlen(s), i = 0;
    for (; i < sizeof(pat) - 1 && i < n; i++)
        if (pat[i] == 'd' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i])
            return 0;
    if (i != 10 && i != 16 && i != 19)
        return 0;
    if (i == 19 && s[i] == '.') {
        size_t d = 0;
        for (i++; s[i] >= '0' && s[i] <= '9'; i++)
            d++;
        if (d < 1 || d > 3)
            return 0;
    }
    if (i > 10 && s[i] == 'Z')
        i++;
    int mo = (s[5] - '0') * 10 + (s[6] - '0'), dd = (s[8] - '0') * 10 + (s[9] - '0');
    return i == n && mo >= 1 && mo <= 12 && dd >= 1 && dd <= 31;
}

int answers_delete(struct answers *a, const struct answers_filter *f, int dry_run, long *n_answers, long *n_votes,
                   int *wal_kept, char *err, size_t errlen)
{
    *n_answers = *n_votes = 0;
    *wal_kept = 0;
    if (!f->answer_id && !f->conversation_id && !f->before) {
        snprintf(err, errlen, "deleting answers needs an answer id, a conversation id or a time");
        return AISLE_EINVAL;
    }
    if (f->before && !valid_time(f->before)) {
        snprintf(err, errlen, "'%.40s' is not a UTC time YYYY-MM-DD[THH:MM[:SS[.mmm]]][Z]", f->before);
        return AISLE_EINVAL;
    }
    /* created_at is 'YYYY-MM-DDTHH:MM:SS.mmmZ': text order is time order, and
     * a shorter prefix sorts before every time it begins. */
    static const char match[] = "(?1 IS NULL OR id = ?1) AND (?2 IS NULL OR conversation_id = ?2)"
                                " AND (?3 IS NULL OR created_at < ?3)";
    char sql[3][512];
    snprintf(sql[0], sizeof sql[0],
             "SELECT count(*), (SELECT count(*) FROM feedback_log WHERE answer_id IN (SELECT id FROM answers"
             " WHERE %s)) FROM answers WHERE %s",
             match, match);
    snprintf(sql[1], sizeof sql[1], "DELETE FROM feedback_log WHERE answer_id IN (SELECT id FROM answers WHERE %s)",
             match);
    snprintf(sql[2], sizeof sql[2], "DELETE FROM feedback WHERE answer_id IN (SELECT id FROM answers WHERE %s)",
             match);
    const char *del_answers = "DELETE FROM answers WHERE (?1 IS NULL OR id = ?1) AND"
                              " (?2 IS NULL OR conversation_id = ?2) AND (?3 IS NULL OR created_at < ?3)";
    int rc = exec(a, "PRAGMA secure_delete = ON", err, errlen);
    if (rc || (rc = exec(a, "BEGIN IMMEDIATE", err, errlen)))
        return rc;
    for (int i = 0; i < 4; i++) {
        if (i > 0 && dry_run)
            break;
        sqlite3_stmt *st = NULL;
        if (sqlite3_prepare_v2(a->db, i < 3 ? sql[i] : del_answers, -1, &st, NULL) != SQLITE_OK) {
            rc = db_fail(a->db, err, errlen, "prepare the delete");
            goto fail;
        }
        bind_text(st, 1, f->answer_id);
        bind_text(st, 2, f->conversation_id);
        bind_text(st, 3, f->before);
        int step = sqlite3_step(st);
        if (i == 0 && step == SQLITE_ROW) {
            *n_answers = (long)sqlite3_column_int64(st, 0);
            *n_votes = (long)sqlite3_column_int64(st, 1);
            step = sqlite3_step(st);
        }
        sqlite3_finalize(st);
        if (step != SQLITE_DONE) {
            rc = db_fail(a->db, err, errlen, i ? "delete the answers" : "count the answers");
            goto fail;
        }
    }
    if (dry_run) {
        sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
        return 0;
    }
    if ((rc = exec(a, "COMMIT", err, errlen)))
        goto fail;
    /* The WAL still holds the pages as they were: copy the new ones back and
     * empty it. Busy when another connection reads: its frames stay until a
     * later checkpoint. */
    int log = 0, done = 0;
    if (sqlite3_wal_checkpoint_v2(a->db, NULL, SQLITE_CHECKPOINT_TRUNCATE, &log, &done) != SQLITE_OK ||
        (log > 0 && done < log))
        *wal_kept = 1;
    return 0;
fail:
    sqlite3_exec(a->db, "ROLLBACK", NULL, NULL, NULL);
    return rc;
}

int answers_submit(struct answers *a, struct answers_job *j)
{
    int rc = 0;
    pthread_mutex_lock(&a->mu);
    if (a->closing || !a->writer || a->n_queued >= ANSWERS_MAX_QUEUE)
        rc = AISLE_EBUSY;
    else {
        j->next = NULL;
        if (a->tail)
            a->tail->next = j;
        else
            a->head = j;
        a->tail = j;
        a->n_queued++;
        pthread_cond_signal(&a->cv);
    }
    pthread_mutex_unlock(&a->mu);
    return rc;
}

/* A new file, or one this schema made: version 1 with every column. */
static int schema_current(sqlite3 *db)
{
    sqlite3_stmt *st = NULL;
    int exists = 0, ok = 1;
    if (sqlite3_prepare_v2(db, "SELECT count(*) FROM sqlite_master WHERE name = 'answers'", -1, &st, NULL) ==
            SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        exists = sqlite3_column_int(st, 0) > 0;
    sqlite3_finalize(st);
    if (!exists)
        return 1;
    ok = sqlite3_prepare_v2(db, "SELECT prompt_hash FROM answers LIMIT 0", -1, &st, NULL) == SQLITE_OK;
    sqlite3_finalize(st);
    if (ok && sqlite3_prepare_v2(db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK &&
        sqlite3_step(st) == SQLITE_ROW)
        ok = sqlite3_column_int(st, 0) == 1;
    sqlite3_finalize(st);
    return ok;
}

int answers_open(struct answers **out, const char *path, int writer, int read_only, char *err, size_t errlen)
{
    struct answers *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "out of memory");
        return AISLE_ENOMEM;
    }
    int rc;
    int fl = read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE;
    if (sqlite3_open_v2(path, &a->db, fl | SQLITE_OPEN_NOMUTEX, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot open the answers database: %s", path,
                 a->db ? sqlite3_errmsg(a->db) : "out of memory");
        rc = AISLE_EDB;
        goto fail;
    }
    sqlite3_busy_timeout(a->db, 10000);
    if (read_only) {
        sqlite3_stmt *st = NULL;
        int ok = sqlite3_prepare_v2(a->db, "SELECT count(*) FROM answers, feedback LIMIT 0", -1, &st, NULL) ==
                 SQLITE_OK;
        sqlite3_finalize(st);
        if (!ok) {
            snprintf(err, errlen, "%s: not an answers database (%s)", path, sqlite3_errmsg(a->db));
            rc = AISLE_EDB;
            goto fail;
        }
    } else if (!schema_current(a->db)) { /* another version's file is refused, not half-used */
        snprintf(err, errlen, "%s: an answers database of another schema version (this aisle writes version 1)",
                 path);
        rc = AISLE_EDB;
        goto fail;
    } else if (sqlite3_exec(a->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;", NULL, NULL, NULL) !=
                   SQLITE_OK ||
               sqlite3_exec(a->db, answers_schema, NULL, NULL, NULL) != SQLITE_OK) {
        snprintf(err, errlen, "%s: cannot set up the answers database: %s", path, sqlite3_errmsg(a->db));
        rc = AISLE_EDB;
        goto fail;
    }
    pthread_mutex_init(&a->mu, NULL);
    pthread_cond_init(&a->cv, NULL);
    if (writer && !read_only) {
        if (pthread_create(&a->th, NULL, writer_main, a)) {
            snprintf(err, errlen, "cannot start the answers writer thread");
            pthread_mutex_destroy(&a->mu);
            pthread_cond_destroy(&a->cv);
            rc = AISLE_ENOMEM;
            goto fail;
        }
        a->writer = 1;
    }
    *out = a;
    return 0;
fail:
    sqlite3_close(a->db);
    free(a);
    return rc;
}

void answers_close(struct answers *a)
{
    if (!a)
        return;
    if (a->writer) {
        pthread_mutex_lock(&a->mu);
        a->closing = 1;
        pthread_cond_broadcast(&a->cv);
        pthread_mutex_unlock(&a->mu);
        pthread_join(a->th, NULL);
    }
    pthread_mutex_destroy(&a->mu);
    pthread_cond_destroy(&a->cv);
    sqlite3_close(a->db);
    free(a);
}

/* ---- export and stats ---------------------------------------------------------- */

static const char *col(sqlite3_stmt *st, int i)
{
    const char *s = (const char *)sqlite3_column_text(st, i);
    return s ? s : "";
}

static int put_line(FILE *f, json_t *o)
{
    if (!o)
        return AISLE_ENOMEM;
    int rc = json_dumpf(o, f, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_ENSURE_ASCII) || fputc('\n', f) == EOF
                 ? AISLE_EIO
                 : 0;
    json_decref(o);
    return rc;
}

int answers_export(struct answers *a, int dpo, FILE *f, long *n_rows, char *err, size_t errlen)
{
    /* KTO: every voted answer. DPO: each up answer paired with each down
     * answer of the same prompt text (same conversation, question and evidence). */
    const char *sql = dpo ? "SELECT u.prompt, u.output, d.output, u.id, d.id, u.model FROM answers u"
                            " JOIN feedback fu ON fu.answer_id = u.id AND fu.rating = 1"
                            " JOIN answers d ON d.prompt_hash = u.prompt_hash AND d.prompt = u.prompt AND d.id <> u.id"
                            " JOIN feedback fd ON fd.answer_id = d.id AND fd.rating = -1"
                            " ORDER BY u.created_at, u.id, d.created_at, d.id"
                          : "SELECT a.prompt, a.output, f.rating, a.id, a.created_at, a.model FROM answers a"
                            " JOIN feedback f ON f.answer_id = a.id ORDER BY a.created_at, a.id";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK)
        return db_fail(a->db, err, errlen, "prepare the export");
    long n = 0;
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        json_t *o = dpo ? json_pack("{s:s, s:s, s:s, s:s, s:s, s:s}", "prompt", col(st, 0), "chosen", col(st, 1),
                                    "rejected", col(st, 2), "chosen_id", col(st, 3), "rejected_id", col(st, 4),
                                    "model", col(st, 5))
                        : json_pack("{s:s, s:s, s:b, s:s, s:s, s:s}", "prompt", col(st, 0), "completion",
                                    col(st, 1), "label", sqlite3_column_int(st, 2) > 0, "answer_id", col(st, 3),
                                    "created_at", col(st, 4), "model", col(st, 5));
        if ((rc = put_line(f, o))) {
            snprintf(err, errlen, "cannot write the export: %s", aisle_strerror(rc));
            break;
        }
        n++;
    }
    if (!rc && step != SQLITE_DONE)
        rc = db_fail(a->db, err, errlen, "read the answers");
    sqlite3_finalize(st);
    if (!rc && fflush(f)) {
        snprintf(err, errlen, "cannot write the export");
        rc = AISLE_EIO;
    }
    if (!rc)
        *n_rows = n;
    return rc;
}

static json_t *counts_json(sqlite3_stmt *st, int base)
{
    json_int_t n = sqlite3_column_int64(st, base), up = sqlite3_column_int64(st, base + 1),
               down = sqlite3_column_int64(st, base + 2);
    return json_pack("{s:I, s:I, s:I, s:I, s:f}", "answers", n, "voted", up + down, "up", up, "down", down,
                     "up_share", up + down ? (double)up / (double)(up + down) : 0.0);
}

char *answers_stats(struct answers *a, char *err, size_t errlen)
{
    static const char sql[] = "SELECT a.model, count(*), count(f.rating = 1 OR NULL), count(f.rating = -1 OR NULL)"
                              " FROM answers a LEFT JOIN feedback f ON f.answer_id = a.id"
                              " GROUP BY a.model ORDER BY a.model";
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(a->db, sql, -1, &st, NULL) != SQLITE_OK) {
        db_fail(a->db, err, errlen, "prepare the stats");
        return NULL;
    }
    json_t *by = json_object();
    json_int_t n = 0, up = 0, down = 0;
    int step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        n += sqlite3_column_int64(st, 1);
        up += sqlite3_column_int64(st, 2);
        down += sqlite3_column_int64(st, 3);
        json_object_set_new(by, col(st, 0), counts_json(st, 1));
    }
    char *out = NULL;
    if (step != SQLITE_DONE)
        db_fail(a->db, err, errlen, "read the answers");
    else {
        json_t *o = json_pack("{s:I, s:I, s:I, s:I, s:f, s:O}", "answers", n, "voted", up + down, "up", up, "down",
                              down, "up_share", up + down ? (double)up / (double)(up + down) : 0.0, "by_model", by);
        out = o ? json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(4)) : NULL;
        json_decref(o);
        if (!out)
            snprintf(err, errlen, "out of memory");
    }
    json_decref(by);
    sqlite3_finalize(st);
    return out;
}
