/* The models a worker serves: a registry of backends and of loaded models,
 * looked up by name.  The built-in backends of lib/backends ("scale",
 * "mlp", "topk") are always registered.  Host-only (see backend.h for what
 * a plugin sees).
 *
 * Threads: building the registry (kinfer_models_new/_add_*) happens on the
 * main thread before the pipeline starts; lookups and kinfer_model_infer
 * from any thread afterwards.
 */
#ifndef KINFER_MODEL_H
#define KINFER_MODEL_H

#include <stddef.h>

#include "kinfer/backend.h"
#include "kinfer/error.h"

struct kinfer_models;
struct kinfer_model;

enum kinfer_err kinfer_models_new(struct kinfer_models **out)
    __attribute__((warn_unused_result));

/* Destroys every model.  NULL is a no-op. */
void kinfer_models_free(struct kinfer_models *ms);

/* Register a backend (a plugin's, say) so models can name it.  The backend
 * is borrowed and must outlive ms.  KINFER_ERR_ABI when its abi_version is
 * not KINFER_BACKEND_ABI_VERSION; KINFER_ERR_INVALID when a backend of that
 * name is already registered.  Built-in backends are registered by
 * kinfer_models_new. */
enum kinfer_err kinfer_models_add_backend(struct kinfer_models *ms,
                                          const struct kinfer_backend *b,
                                          char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* The host services handed to backends (allocation, tensors, logging). */
const struct kinfer_host *kinfer_host_get(void);

/* Serving settings of one model (config.json fields of the same names). */
struct kinfer_model_settings {
    const char *version;         /* model_version in results; NULL -> "1" */
    size_t max_batch_size;       /* 0 or 1: no batching */
    long max_queue_delay_us;     /* how long a batch may wait to fill */
    size_t preferred_batch_size; /* 0: max_batch_size */
};

/* Load a model called name with the registered backend `backend`, from
 * dir (may be NULL) and config_json (the config.json text, may be NULL),
 * with settings s (NULL: defaults).  Errors name the model and the cause
 * in err. */
enum kinfer_err kinfer_models_load(struct kinfer_models *ms, const char *name,
                                   const char *backend,
                                   const struct kinfer_model_settings *s,
                                   const char *dir, const char *config_json,
                                   char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* The settings the model was loaded with. */
const struct kinfer_model_settings *
kinfer_model_settings(const struct kinfer_model *m);

/* The model called name (its newest version: by number when versions are
 * decimal numbers, else by text), or NULL.  Borrowed from ms. */
const struct kinfer_model *kinfer_models_find(const struct kinfer_models *ms,
                                              const char *name);

/* The loaded models, in load order: index 0 .. count-1. */
/* The model called name in the version asked for (version NULL: its
 * newest, as kinfer_models_find).  NULL when there is none, with the
 * reason in why[0..whysize): an unknown name (naming the models served) or
 * an unknown version (naming the versions served). */
const struct kinfer_model *
kinfer_models_find_version(const struct kinfer_models *ms, const char *name,
                           const char *version, char *why, size_t whysize);

size_t kinfer_models_count(const struct kinfer_models *ms);
const struct kinfer_model *kinfer_models_at(const struct kinfer_models *ms,
                                            size_t i);

/* The position of m in its registry (as kinfer_models_at counts). */
size_t kinfer_model_index(const struct kinfer_model *m);

/* Comma-separated names of the loaded models, for error messages. */
const char *kinfer_models_names(const struct kinfer_models *ms);

const char *kinfer_model_name(const struct kinfer_model *m);
const char *kinfer_model_version(const struct kinfer_model *m);

/* Write a one-line summary of m's signature to buf, e.g.
 * "input FP32 [-1,16] -> output FP32 [-1,4]" ("any inputs" when the
 * backend does not describe itself). */
void kinfer_model_describe(const struct kinfer_model *m, char *buf,
                           size_t size);

/* Run a batch on m: items[i].request is borrowed, outputs and failures are
 * written into items[i] (free them with kinfer_infer_item_clear).  Every
 * item ends up either answered or failed with a message -- also when the
 * backend fails the whole batch, which marks every item failed -- so the
 * caller answers item by item and there is nothing to return. */
void kinfer_model_infer(const struct kinfer_model *m,
                        struct kinfer_infer_item *items, size_t n);

/* Free the outputs an infer call attached to item and reset it. */
void kinfer_infer_item_clear(struct kinfer_infer_item *item);

#endif
