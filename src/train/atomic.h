/*
 * atomic.h — write a file so that readers see either the old file or the
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

/* Write a whole buffer to path atomically. 0 or AISLE_EIO / AISLE_ENOMEM with detail. */
int trn_atomic_write(const char *path, const void *data, size_t n, char *err, size_t errlen);

#endif
