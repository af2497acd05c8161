/* Model backends loaded from shared objects (the worker's --plugin).  A
 * plugin exports kinfer_backend_entry (backend.h); this module opens it,
 * checks the backend it returns and keeps the object mapped for as long as
 * models built by that backend may run.
 *
 * Threads: main thread only, before the pipeline starts (loading) and after
 * it stopped (freeing).
 */
#ifndef KINFER_PLUGIN_H
#define KINFER_PLUGIN_H

#include <stddef.h>

#include "kinfer/backend.h"
#include "kinfer/error.h"

/* The set of loaded plugins. */
struct kinfer_plugins;

enum kinfer_err kinfer_plugins_new(struct kinfer_plugins **out)
    __attribute__((warn_unused_result));

/* Open the shared object at path (dlopen RTLD_NOW | RTLD_LOCAL: a path
 * without a '/' is searched like the dynamic linker does, so pass "./x.so"
 * for a file in the current directory), call its kinfer_backend_entry with
 * kinfer_host_get() and check the backend it returns.
 *
 * On KINFER_OK *backend is the plugin's backend, borrowed from ps: it stays
 * valid until kinfer_plugins_free(ps).  The caller registers it with
 * kinfer_models_add_backend.
 *
 * On error nothing stays loaded and err[0..errsize) says why, always
 * starting "plugin PATH: ":
 *   KINFER_ERR_IO       the object cannot be loaded (dlerror's reason)
 *   KINFER_ERR_INVALID  no kinfer_backend_entry symbol; the entry returned
 *                       NULL; the backend lacks a name or a function
 *   KINFER_ERR_ABI      "built for backend ABI 7, kinfer speaks 2" */
enum kinfer_err kinfer_plugins_load(struct kinfer_plugins *ps, const char *path,
                                    const struct kinfer_backend **backend,
                                    char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* Number of plugins loaded into ps. */
size_t kinfer_plugins_count(const struct kinfer_plugins *ps);

/* Unload every plugin (dlclose) and free ps.  Call it only after every
 * model built by a plugin's backend is destroyed (kinfer_models_free):
 * their code goes away here.  NULL is a no-op. */
void kinfer_plugins_free(struct kinfer_plugins *ps);

#endif
