/* kinfer error codes: one enum for the whole library and a strerror-style
 * name for each.  Functions that can fail return enum kinfer_err and write
 * their result through an out-parameter only on KINFER_OK.
 *
 * KINFER_ERR_NOMEM is what an allocation whose size comes from input
 * reports; the out-of-memory policy as a whole (when kinfer aborts
 * instead) is stated once, in lib/shared/util.h.
 *
 * The enum is part of the backend ABI (backend.h): a plugin returns these
 * codes.  kinfer_strerror is the host's: a plugin does not link libkinfer
 * and cannot call it.  Any thread.
 */
#ifndef KINFER_ERROR_H
#define KINFER_ERROR_H

#ifdef __cplusplus
extern "C" {
#endif

enum kinfer_err {
    KINFER_OK = 0,
    KINFER_ERR_NOMEM,     /* allocation failed */
    KINFER_ERR_INVALID,   /* bad input (request, argument, file contents) */
    KINFER_ERR_TOO_LARGE, /* input over a size or depth cap */
    KINFER_ERR_CONFIG,    /* bad configuration value */
    KINFER_ERR_IO,        /* file system error */
    KINFER_ERR_KAFKA,     /* librdkafka reported an error */
    KINFER_ERR_MODEL,     /* a model failed to load or run */
    KINFER_ERR_NOT_FOUND, /* no such model, partition, key ... */
    KINFER_ERR_CLOSED,    /* queue or pool was closed */
    KINFER_ERR_TIMEOUT,   /* a deadline passed */
    KINFER_ERR_ABI,       /* plugin built for another ABI version */
    /* A transient failure: trying again later may succeed (backend.h).
     * Appended in backend ABI version 2. */
    KINFER_ERR_UNAVAILABLE
};

/* Static, never NULL: a short English description of err. */
const char *kinfer_strerror(enum kinfer_err err);

#ifdef __cplusplus
}
#endif
#endif
