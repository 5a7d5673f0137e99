/*
 * answers_test.c — deleting stored chat answers (store/answers.h
 * answers_delete, answers_set_retention; `aisle feedback delete`): what
 * matches goes with its votes, nothing else moves, a dry run changes nothing,
 * no byte of a deleted answer stays in the database or its WAL, and the
 * server's writer prunes by age on its own.
 */
#include "core/error.h"
#include "store/answers.h"

#include "../testutil.h"

#include <criterion/criterion.h>
#include <sqlite3.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *dir, *adb;

static void setup(void)
{
    dir = tu_tmpdir();
    adb = tu_path(dir, "answers.db");
}

static void teardown(void)
{
    free(adb);
    tu_rmdir(dir);
}

/* Store an answer whose output carries a marker, in a conversation, and vote. */
static void put(struct answers *a, char id[ANSWERS_ID_LEN + 1], const char *conv, const char *marker, int vote)
{
    char err[256], out[128];
    snprintf(out, sizeof out, "The answer %s [1].", marker);
    struct answer_rec r = {.conversation_id = conv, .model = "m", .messages = "[]", .evidence = "[]",
                           .prompt = "<|user|>\nq<|end|>\n", .prompt_tokens = 4, .output = out, .events = "[]",
                           .sampling = "{}", .usage = "{}"};
    answers_new_id(r.id);
    cr_assert_eq(answers_put(a, &r, err, sizeof err), 0, "%s", err);
    if (vote) {
        cr_assert_eq(answers_vote(a, r.id, vote, "first", err, sizeof err), 0, "%s", err);
        cr_assert_eq(answers_vote(a, r.id, vote, "again", err, sizeof err), 0, "%s", err); /* two log rows */
    }
    memcpy(id, r.id, sizeof r.id);
}

static void set_created(const char *id, const char *at)
{
    sqlite3 *db;
    cr_assert_eq(sqlite3_open(adb, &db), SQLITE_OK);
    char sql[256];
    snprintf(sql, sizeof sql, "UPDATE answers SET created_at = '%s' WHERE id = '%s'", at, id);
    cr_assert_eq(sqlite3_exec(db, sql, NULL, NULL, NULL), SQLITE_OK, "%s", sqlite3_errmsg(db));
    sqlite3_close(db);
}

static long long count(const char *sql)
{
    return tu_count(adb, sql);
}

/* Every byte of the database and its WAL, searched for s. */
static int file_has(const char *path, const char *s)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)n + 1);
    size_t got = fread(b, 1, (size_t)n, f);
    fclose(f);
    int hit = got > 0 && memmem(b, got, s, strlen(s)) != NULL;
    free(b);
    return hit;
}

static int files_have(const char *s)
{
    char wal[4096];
    snprintf(wal, sizeof wal, "%s-wal", adb);
    return file_has(adb, s) || file_has(wal, s);
}

TestSuite(answers_delete, .init = setup, .fini = teardown, .timeout = 60);

Test(answers_delete, by_answer_conversation_and_time_with_their_votes)
{
    struct answers *a;
    char err[256], x1[33], x2[33], y1[33], z1[33];
    cr_assert_eq(answers_open(&a, adb, 0, 0, err, sizeof err), 0, "%s", err);
    put(a, x1, "conv-x", "MARKER-X1", 1);
    put(a, x2, "conv-x", "MARKER-X2", -1);
    put(a, y1, "conv-y", "MARKER-Y1", 1);
    put(a, z1, NULL, "MARKER-Z1", 0);
    set_created(y1, "2025-03-01T10:00:00.000Z");
    cr_assert(files_have("MARKER-X1"));

    long n, nv;
    int kept;
    /* A dry run counts and changes nothing. */
    struct answers_filter f = {.conversation_id = "conv-x"};
    cr_assert_eq(answers_delete(a, &f, 1, &n, &nv, &kept, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_eq(nv, 4, "two answers, two votes each in the log");
    cr_assert_eq(count("SELECT count(*) FROM answers"), 4);

    /* The conversation: its answers, their current votes and their vote log. */
    cr_assert_eq(answers_delete(a, &f, 0, &n, &nv, &kept, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 2);
    cr_assert_eq(nv, 4);
    cr_assert_eq(kept, 0, "no other connection: the WAL is emptied");
    cr_assert_eq(count("SELECT count(*) FROM answers"), 2);
    cr_assert_eq(count("SELECT count(*) FROM answers WHERE conversation_id = 'conv-x'"), 0);
    cr_assert_eq(count("SELECT count(*) FROM feedback"), 1, "conv-y's vote stays");
    cr_assert_eq(count("SELECT count(*) FROM feedback_log"), 2);
    cr_assert(!files_have("MARKER-X1") && !files_have("MARKER-X2"),
              "no copy of a deleted answer in the database or its WAL");
    cr_assert(files_have("MARKER-Y1") && files_have("MARKER-Z1"), "the search itself finds what stays");

    /* By time: only what was created before. */
    struct answers_filter t = {.before = "2025-06-01"};
    cr_assert_eq(answers_delete(a, &t, 0, &n, &nv, &kept, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 1);
    cr_assert_eq(nv, 2);
    cr_assert_eq(count("SELECT count(*) FROM answers"), 1);
    cr_assert_eq(count("SELECT count(*) FROM feedback"), 0);
    cr_assert_eq(count("SELECT count(*) FROM feedback_log"), 0);
    cr_assert(!files_have("MARKER-Y1"));

    /* One answer by id; criteria combine (an id in another conversation: nothing). */
    struct answers_filter both = {.answer_id = z1, .conversation_id = "conv-x"};
    cr_assert_eq(answers_delete(a, &both, 0, &n, &nv, &kept, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 0);
    struct answers_filter one = {.answer_id = z1};
    cr_assert_eq(answers_delete(a, &one, 0, &n, &nv, &kept, err, sizeof err), 0, "%s", err);
    cr_assert_eq(n, 1);
    cr_assert_eq(count("SELECT count(*) FROM answers"), 0);

    /* Bad requests are refused, naming the problem. */
    struct answers_filter none = {0};
    cr_assert_eq(answers_delete(a, &none, 0, &n, &nv, &kept, err, sizeof err), AISLE_EINVAL);
    cr_assert_not_null(strstr(err, "needs an answer id"), "%s", err);
    const char *bad[] = {"yesterday", "2025-13-01", "2025-01-01 10:00", "2025-01-01T10", "2025-01-01T10:00:00.1234",
                         "2025-01-01'; DROP TABLE answers; --"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        struct answers_filter b = {.before = bad[i]};
        cr_assert_eq(answers_delete(a, &b, 0, &n, &nv, &kept, err, sizeof err), AISLE_EINVAL, "%s", bad[i]);
        cr_assert_not_null(strstr(err, "is not a UTC time"), "%s", err);
    }
    const char *good[] = {"2025-01-01", "2025-01-01T10:00", "2025-01-01T10:00:00Z", "2025-01-01T10:00:00.5Z"};
    for (size_t i = 0; i < sizeof good / sizeof *good; i++) {
        struct answers_filter g = {.before = good[i]};
        cr_assert_eq(answers_delete(a, &g, 1, &n, &nv, &kept, err, sizeof err), 0, "%s: %s", good[i], err);
    }
    answers_close(a);
}

/* The server's writer deletes by age when it starts (and hourly), and keeps
 * taking jobs. */
Test(answers_delete, retention_in_the_writer)
{
    struct answers *a;
    char err[256], old[33], fresh[33];
    cr_assert_eq(answers_open(&a, adb, 0, 0, err, sizeof err), 0, "%s", err);
    put(a, old, "c", "MARKER-OLD", 1);
    put(a, fresh, "c", "MARKER-NEW", 1);
    answers_close(a);
    char at[32];
    answers_days_ago(at, 40);
    set_created(old, at);

    cr_assert_eq(answers_open(&a, adb, 1, 0, err, sizeof err), 0, "%s", err);
    answers_set_retention(a, 30);
    for (int i = 0; i < 500 && count("SELECT count(*) FROM answers") != 1; i++)
        usleep(10000);
    answers_close(a);
    cr_assert_eq(count("SELECT count(*) FROM answers"), 1, "the 40-day-old answer is gone");
    cr_assert_eq(count("SELECT count(*) FROM feedback_log"), 2, "with its votes; the fresh one's stay");
    char sql[128];
    snprintf(sql, sizeof sql, "SELECT count(*) FROM answers WHERE id = '%s'", fresh);
    cr_assert_eq(count(sql), 1);
    cr_assert(!files_have("MARKER-OLD"));
}

Test(answers_delete, command_line)
{
    struct answers *a;
    char err[256], x[33], y[33];
    cr_assert_eq(answers_open(&a, adb, 0, 0, err, sizeof err), 0, "%s", err);
    put(a, x, "conv-x", "MARKER-X", 1);
    put(a, y, "conv-y", "MARKER-Y", -1);
    answers_close(a);
    set_created(y, "2024-01-01T00:00:00.000Z");
    const char *bin = tu_aisle();
    char *out;
    cr_assert_eq(tu_run(&out, "%s feedback delete --db %s --conversation conv-x --dry-run", bin, adb), 0, "%s", out);
    cr_assert_str_eq(out, "would delete 1 answers (2 votes)\n");
    free(out);
    cr_assert_eq(count("SELECT count(*) FROM answers"), 2);
    cr_assert_eq(tu_run(&out, "%s feedback delete --db %s --older-than 30", bin, adb), 0, "%s", out);
    cr_assert_str_eq(out, "deleted 1 answers (2 votes)\n");
    free(out);
    cr_assert_eq(tu_run(&out, "%s feedback delete --db %s --answer %s", bin, adb, x), 0, "%s", out);
    cr_assert_str_eq(out, "deleted 1 answers (2 votes)\n");
    free(out);
    cr_assert_eq(count("SELECT count(*) FROM answers"), 0);
    cr_assert(!files_have("MARKER-X") && !files_have("MARKER-Y"));

    struct {
        const char *args, *msg;
        int rc;
    } use[] = {
        {"delete --db %s", "delete needs --answer, --conversation, --before or --older-than", 2},
        {"delete --db %s --before 2025-01-01 --older-than 3", "--before and --older-than: give one", 2},
        {"delete --db %s --before tuesday", "'tuesday' is not a UTC time", 2},
        {"delete --db %s --older-than -1", "--older-than", 2},
        {"export --db %s --conversation c", "are for delete", 2},
        {"stats --db %s --dry-run", "are for delete", 2},
        {"delete --db %s.none --conversation c", "no such answers database", 1},
    };
    for (size_t i = 0; i < sizeof use / sizeof *use; i++) {
        char args[4200];
        snprintf(args, sizeof args, use[i].args, adb);
        int rc = tu_run(&out, "%s feedback %s", bin, args);
        cr_assert_eq(rc, use[i].rc, "%s: %s", args, out);
        cr_assert_not_null(strstr(out, use[i].msg), "%s: %s", args, out);
        free(out);
    }
}
