/*
 * atomic.c — tmp file + fsync + rename (see atomic.h).
 */
#include "train/atomic.h"

#include "core/error.h"

#include <errno.h>
#include <stdarg.h>
#include <sys/mman.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void set_err(char *err, size_t errlen, const char *path, const char *step, int e)
{
    if (err && errlen)
        snprintf(err, errlen, "%s: %s: %s", path, step, strerror(e));
}

int trn_atomic_open(struct trn_atomic *a, const char *path, char *err, size_t errlen)
{
    memset(a, 0, sizeof *a);
    size_t plen = strlen(path);
    a->path = strdup(path);
    a->tmp = malloc(plen + 16);
    if (!a->path || !a->tmp) {
        free(a->path);
        free(a->tmp);
        memset(a, 0, sizeof *a);
        if (err && errlen)
            snprintf(err, errlen, "%s: out of memory", path);
        return AISLE_ENOMEM;
    }
    snprintf(a->tmp, plen + 16, "%s.tmp.XXXXXX", path);
    int fd = mkstemp(a->tmp);
    if (fd < 0) {
        set_err(err, errlen, path, "create", errno);
        free(a->path);
        free(a->tmp);
        memset(a, 0, sizeof *a);
        return AISLE_EIO;
    }
    /* mkstemp makes the file 0600; shards and checkpoints are ordinary data. */
    (void)fchmod(fd, 0644);
    a->f = fdopen(fd, "wb");
    if (!a->f) {
        int e = errno;
        close(fd);
        unlink(a->tmp);
        set_err(err, errlen, path, "open", e);
        free(a->path);
        free(a->tmp);
        memset(a, 0, sizeof *a);
        return AISLE_EIO;
    }
    return 0;
}

static void sync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir = slash ? strndup(path, slash == path ? 1 : (size_t)(slash - path)) : strdup(".");
    if (!dir)
        return;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd >= 0) {
        (void)fsync(fd);
        close(fd);
    }
    free(dir);
}

void trn_atomic_abort(struct trn_atomic *a)
{
    if (a->f)
        fclose(a->f);
    if (a->tmp)
        unlink(a->tmp);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
}

int trn_atomic_commit(struct trn_atomic *a, char *err, size_t errlen)
{
    const char *step = "write";
    int e;
    if (ferror(a->f) || fflush(a->f) != 0)
        goto fail;
    step = "fsync";
    if (fsync(fileno(a->f)) != 0)
        goto fail;
    step = "close";
    int cr = fclose(a->f);
    a->f = NULL;
    if (cr != 0)
        goto fail;
    step = "rename";
    if (rename(a->tmp, a->path) != 0)
        goto fail;
    sync_dir(a->path);
    free(a->tmp);
    free(a->path);
    memset(a, 0, sizeof *a);
    return 0;
fail:
    e = errno ? errno : EIO;
    set_err(err, errlen, a->path, step, e);
    trn_atomic_abort(a);
    return AISLE_EIO;
}

int trn_atomic_write(const char *path, const void *data, size_t n, char *err, size_t errlen)
{
    struct trn_atomic a;
    int rc = trn_atomic_open(&a, path, err, errlen);
    if (rc)
        return rc;
    if (n && fwrite(data, 1, n, a.f) != n) {
        set_err(err, errlen, path, "write", errno ? errno : EIO);
        trn_atomic_abort(&a);
        return AISLE_EIO;
    }
    return trn_atomic_commit(&a, err, errlen);
}

void trn_seterr(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || !errlen)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

int trn_map_file(const char *path, const void **data, void **map, size_t *len, char *err, size_t errlen)
{
    static const unsigned char empty[1];
    struct stat st;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0 || fstat(fd, &st) != 0) {
        trn_seterr(err, errlen, "%s: %s", path, strerror(errno));
        if (fd >= 0)
            close(fd);
        return AISLE_EIO;
    }
    size_t n = (size_t)st.st_size;
    void *p = n ? mmap(NULL, n, PROT_READ, MAP_PRIVATE, fd, 0) : NULL;
    close(fd);
    if (p == MAP_FAILED) {
        trn_seterr(err, errlen, "%s: mmap: %s", path, strerror(errno));
        return AISLE_EIO;
    }
    *data = p ? p : (const void *)empty;
    *map = p;
    *len = n;
    return 0;
}

void trn_unmap(void *map, size_t len)
{
    if (map)
        munmap(map, len);
}
