/*
 * replay.c — run a libFuzzer target's corpus without libFuzzer.
 *
 * Linked with one fuzz/<name>_fuzz.c (see the Makefile's $(BUILD)/fuzz/%-replay
 * rule) so that every corpus replays in ordinary CI builds with gcc, plain or
 * under ASan/UBSan. Each argument is a directory, whose regular files are fed to
 * LLVMFuzzerTestOneInput in name order (so a run is deterministic), or a single
 * file. A target that defines LLVMFuzzerInitialize gets it called once first
 * (weak symbol: targets need not define it).
 *
 * Invariant: a missing or empty directory is a failure, so a corpus that was
 * moved or deleted cannot make CI pass by replaying nothing. The target reports
 * a violated invariant by aborting, as under libFuzzer.
 *
 * This is a program, not library code: it prints and returns exit codes.
 */
#include <dirent.h>
#include <errno.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv) __attribute__((weak));

#define REPLAY_MAX_INPUT (64u << 20) /* corpus files are small; refuse runaway ones */

/* Read the whole file at path into a fresh allocation (*out, caller frees).
 * 0, or -1 with a message printed. A 0-byte file yields a 1-byte buffer so
 * the target still gets a valid pointer. */
static int read_file(const char *path, uint8_t **out, size_t *len)
{
    FILE *f = fopen(path, "rb");
    uint8_t *data = NULL;
    size_t n = 0, cap = 0;
    if (!f) {
        fprintf(stderr, "replay: %s: %s\n", path, strerror(errno));
        return -1;
    }
    for (;;) {
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 4096;
            uint8_t *p;
            if (ncap > REPLAY_MAX_INPUT) {
                fprintf(stderr, "replay: %s: larger than %u bytes\n", path, REPLAY_MAX_INPUT);
                goto fail;
            }
            p = realloc(data, ncap);
            if (!p) {
                fprintf(stderr, "replay: %s: out of memory\n", path);
                goto fail;
            }
            data = p;
            cap = ncap;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0)
            break;
    }
    if (ferror(f)) {
        fprintf(stderr, "replay: %s: read error\n", path);
        goto fail;
    }
    fclose(f);
    *out = data;
    *len = n;
    return 0;
fail:
    free(data);
    fclose(f);
    return -1;
}

static int run_file(const char *path)
{
    uint8_t *data;
    size_t len;
    if (read_file(path, &data, &len) != 0)
        return -1;
    /* Copy into an exact-size buffer so ASan catches a read one past the end,
     * as libFuzzer's own driver would. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) {
        free(data);
        fprintf(stderr, "replay: %s: out of memory\n", path);
        return -1;
    }
    if (len)
        memcpy(exact, data, len);
    free(data);
    LLVMFuzzerTestOneInput(exact, len);
    free(exact);
    return 0;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Replay every regular file in dir, sorted by name. The number replayed, or -1. */
static long run_dir(const char *dir)
{
    DIR *d = opendir(dir);
    char **names = NULL;
    size_t n = 0, cap = 0;
    long done = -1;
    struct dirent *e;
    if (!d) {
        fprintf(stderr, "replay: %s: %s\n", dir, strerror(errno));
        return -1;
    }
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue; /* ".", "..", and editor/hidden files */
        if (n == cap) {
            size_t ncap = cap ? cap * 2 : 64;
            char **p = realloc(names, ncap * sizeof(*p));
            if (!p)
                goto oom;
            names = p;
            cap = ncap;
        }
        names[n] = strdup(e->d_name);
        if (!names[n])
            goto oom;
        n++;
    }
    if (n)
        qsort(names, n, sizeof(*names), cmp_names);
    done = 0;
    for (size_t i = 0; i < n; i++) {
        size_t plen = strlen(dir) + 1 + strlen(names[i]) + 1;
        char *path = malloc(plen);
        struct stat st;
        if (!path) {
            done = -1;
            goto oom;
        }
        snprintf(path, plen, "%s/%s", dir, names[i]);
        if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) {
            free(path);
            continue;
        }
        if (run_file(path) != 0) {
            free(path);
            done = -1;
            goto out;
        }
        free(path);
        done++;
    }
    goto out;
oom:
    fprintf(stderr, "replay: %s: out of memory\n", dir);
    done = -1;
out:
    for (size_t i = 0; i < n; i++)
        free(names[i]);
    free(names);
    closedir(d);
    return done;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR_OR_FILE...\n", argv[0]);
        return 2;
    }
    if (LLVMFuzzerInitialize)
        LLVMFuzzerInitialize(&argc, &argv);
    for (int i = 1; i < argc; i++) {
        struct stat st;
        if (stat(argv[i], &st) != 0) {
            fprintf(stderr, "replay: %s: %s\n", argv[i], strerror(errno));
            return 1;
        }
        if (S_ISDIR(st.st_mode)) {
            long n = run_dir(argv[i]);
            if (n < 0)
                return 1;
            if (n == 0) {
                fprintf(stderr, "replay: %s: no inputs (empty corpus)\n", argv[i]);
                return 1;
            }
            printf("replayed %ld inputs from %s\n", n, argv[i]);
        } else {
            if (run_file(argv[i]) != 0)
                return 1;
            printf("replayed 1 inputs from %s\n", argv[i]);
        }
    }
    return 0;
}
