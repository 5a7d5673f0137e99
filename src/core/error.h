/*
 * error.h — the one error enum of Aisle.
 *
 * Fallible functions return int: 0 on success or one of the negative codes below
 * (libuv style). Detail text belongs on the object that failed (a reader, a store),
 * never on stderr: library code neither prints nor exits.
 *
 * THREAD SAFETY: aisle_strerror() returns static strings and is safe from any thread.
 */
#ifndef AISLE_CORE_ERROR_H
#define AISLE_CORE_ERROR_H

enum aisle_err {
    AISLE_OK = 0,
    AISLE_ENOMEM = -1,    /* allocation failed */
    AISLE_EIO = -2,       /* read/write/open failed (errno-level) */
    AISLE_EFORMAT = -3,   /* input bytes are not in the expected format */
    AISLE_ETOOBIG = -4,   /* a size or count exceeds a named limit */
    AISLE_EINVAL = -5,    /* a caller passed an invalid argument */
    AISLE_ENOTFOUND = -6, /* the named thing does not exist */
    AISLE_EDB = -7,       /* the database reported an error */
    AISLE_EUTF8 = -8,     /* bytes are not valid UTF-8 */
    AISLE_EEOF = -9,      /* end of input (not an error for iterators) */
    AISLE_EEXIST = -10,   /* a duplicate where uniqueness is required */
    AISLE_EBUSY = -11,    /* resource busy or locked */
    AISLE_EUNAVAIL = -12, /* a remote service is down, slow or answered garbage */
};

/* Short, stable English text for an error code; never NULL. */
const char *aisle_strerror(int err);

#endif
