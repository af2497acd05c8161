/* Backends compiled into kinfer, registered by kinfer_models_new (the
 * dense ones are declared in backends/builtin_ml.h). */
#ifndef KINFER_MODEL_BUILTIN_H
#define KINFER_MODEL_BUILTIN_H

#include "kinfer/backend.h"

/* "scale": every input element times parameters.factor (default 2). */
extern const struct kinfer_backend kinfer_backend_scale;

#endif
