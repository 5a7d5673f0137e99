/*
 * atomic.h — file helpers of the trainer: map a file read-only, and write a
 * file so that readers see either the old file or the
 * whole new one: the bytes go to a temporary file beside the target
 * (PATH.tmp.XXXXXX), which is flushed, fsynced, closed and renamed over the
 * target, and the directory is fsynced. Used for token shards, checkpoints,
 * manifests and logs the trainer rewrites.
 *
 * Invariants: until trn_atomic_commit succeeds the target is untouched; a
 * failed or abandoned write removes its temporary file.
 *
 * Ownership: struct trn_atomic is caller storage; it owns the FILE * (f, for
 * the caller to write to) and the temporary path until commit or abort.
 *
 * THREAD SAFETY: one thread per struct trn_atomic.
 */
#ifndef AISLE_TRAIN_ATOMIC_H
#define AISLE_TRAIN_ATOMIC_H

#include <stddef.h>
#include <stdio.h>

struct trn_atomic {
    FILE *f;       /* write here */
    char *tmp;     /* the temporary path */
    char *path;    /* the target */
};

/* Create the temporary file for path. 0, or AISLE_EIO / AISLE_ENOMEM with
 * "path: create: reason" in err. */
int trn_atomic_open(struct trn_atomic *a, const char *path, char *err, size_t errlen);
/* Flush, fsync, close, rename over the target, fsync the directory. 0 or
 * AISLE_EIO with detail (the temporary file is removed). Releases a either way. */
int trn_atomic_commit(struct trn_atomic *a, char *err, size_t errlen);
/* Close and remove the temporary file; a zeroed or committed a is a no-op. */
void trn_atomic_abort(struct trn_atomic *a);

/* Map path read-only (a 0-byte file gives *data pointing at a static empty
 * byte and *map NULL). 0 or AISLE_EIO with "path: reason" in err. Unmap with
 * trn_unmap(map, len). */
int trn_map_file(const char *path, const void **data, void **map, size_t *len, char *err, size_t errlen);
void trn_unmap(void *map, size_t len);
/* snprintf into err when err is non-NULL and errlen > 0. */
void trn_seterr(char *err, size_t errlen, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

/* Write a whole buffer to path atomically. 0 or AISLE_EIO / AISLE_ENOMEM with detail. */
int trn_atomic_write(const char *path, const void *data, size_t n, char *err, size_t errlen);

#endif
