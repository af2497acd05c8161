/* Backends compiled into kinfer, registered by kinfer_models_new. */
#ifndef KINFER_MODEL_BUILTIN_H
#define KINFER_MODEL_BUILTIN_H

#include "kinfer/backend.h"

/* NULL-terminated list. */
const struct kinfer_backend *const *kinfer_builtin_backends(void);

/* "scale": every input element times parameters.factor (default 2). */
extern const struct kinfer_backend kinfer_backend_scale;

#endif
