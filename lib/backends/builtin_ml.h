/* The dense-model backends built into kinfer from lib/backends: "mlp"
 * (fully connected layers) and "topk" (embedding retrieval).  Each uses
 * only the host table it is given, so the same code could ship as a
 * plugin; kinfer registers them with kinfer_models_add_backend.
 */
#ifndef KINFER_BUILTIN_ML_H
#define KINFER_BUILTIN_ML_H

#include "kinfer/backend.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Static descriptors, valid for the life of the process.  Both return the
 * same pointer on every call. */
const struct kinfer_backend *kinfer_backend_mlp(void);
const struct kinfer_backend *kinfer_backend_topk(void);

#ifdef __cplusplus
}
#endif
#endif
