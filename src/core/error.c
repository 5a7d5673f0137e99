/* error.c — text for the codes in error.h. */
#include "core/error.h"

const char *aisle_strerror(int err)
{
    switch (err) {
    case AISLE_OK: return "success";
    case AISLE_ENOMEM: return "out of memory";
    case AISLE_EIO: return "input/output error";
    case AISLE_EFORMAT: return "malformed input";
    case AISLE_ETOOBIG: return "too big";
    case AISLE_EINVAL: return "invalid argument";
    case AISLE_ENOTFOUND: return "not found";
    case AISLE_EDB: return "database error";
    case AISLE_EUTF8: return "invalid UTF-8";
    case AISLE_EEOF: return "end of input";
    case AISLE_EEXIST: return "already exists";
    case AISLE_EBUSY: return "busy";
    case AISLE_EUNAVAIL: return "unavailable";
    }
    return "unknown error";
}
