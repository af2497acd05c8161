/* kinfer_strerror: one short English name per error code. */
#include "kinfer/error.h"

const char *kinfer_strerror(enum kinfer_err err)
{
    switch (err) {
    case KINFER_OK:
        return "success";
    case KINFER_ERR_NOMEM:
        return "out of memory";
    case KINFER_ERR_INVALID:
        return "invalid input";
    case KINFER_ERR_TOO_LARGE:
        return "input over a size limit";
    case KINFER_ERR_CONFIG:
        return "bad configuration";
    case KINFER_ERR_IO:
        return "input/output error";
    case KINFER_ERR_KAFKA:
        return "kafka error";
    case KINFER_ERR_MODEL:
        return "model error";
    case KINFER_ERR_NOT_FOUND:
        return "not found";
    case KINFER_ERR_CLOSED:
        return "closed";
    case KINFER_ERR_TIMEOUT:
        return "timed out";
    case KINFER_ERR_ABI:
        return "backend ABI version mismatch";
    case KINFER_ERR_UNAVAILABLE:
        return "temporarily unavailable";
    }
    return "unknown error";
}
