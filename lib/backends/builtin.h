/* The backends built into kinfer, all in lib/backends: "scale" (multiply
 * by a factor: the demo's and the tests' model), "mlp" (fully connected
 * layers) and "topk" (embedding retrieval).  Each uses only the host table
 * it is given, so the same code could ship as a plugin; kinfer_models_new
 * registers them with kinfer_models_add_backend.
 */
#ifndef KINFER_BACKENDS_BUILTIN_H
#define KINFER_BACKENDS_BUILTIN_H

#include "kinfer/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Static descriptors, valid for the life of the process: each returns the
 * same pointer on every call.  Any thread. */
const struct kinfer_backend *kinfer_backend_scale(void);
const struct kinfer_backend *kinfer_backend_mlp(void);
const struct kinfer_backend *kinfer_backend_topk(void);

#ifdef __cplusplus
}
#endif
#endif
