/* A model repository: a directory with one subdirectory per model, named
 * after the model, each holding a config.json and the backend's files:
 *
 *     models/
 *       nlp/config.json     {"backend": "fasttext", "model": "model.bin"}
 *       nlp/model.bin
 *       double/config.json  {"backend": "scale", "max_batch_size": 32}
 *
 * Fields of config.json that kinfer itself reads (all but "backend" are
 * optional; any other field belongs to the backend):
 *   "backend"              string, a registered backend (required)
 *   "version"              string or non-negative integer; default "1"
 *   "max_batch_size"       integer 1..4096; default 1 (no batching)
 *   "max_queue_delay_us"   integer 0..1000000; default 0
 *   "preferred_batch_size" integer 1..max_batch_size; default
 *                          max_batch_size
 *
 * Threads: main thread, while the registry is built (model.h).
 */
#ifndef KINFER_REPO_H
#define KINFER_REPO_H

#include <stddef.h>

#include "kinfer/error.h"
#include "kinfer/model.h"

/* Largest config.json accepted. */
#define KINFER_REPO_MAX_CONFIG_BYTES ((size_t)1 << 20)

/* Load every model of the repository dir into ms, in the byte order of the
 * directory names.  Entries whose name starts with '.' are ignored, and so
 * (with a warning in the log) are entries that are not directories.
 *
 * All config.json files are read and checked before any model is loaded,
 * so a broken config loads nothing.  Backends then load the models one by
 * one; when one fails, the models loaded before it stay in ms (the caller
 * gives up and frees ms).
 *
 * Errors name the file or model and the problem, with dir as given, e.g.
 *   "models/foo/config.json: max_batch_size: expected an integer from 1
 *    to 4096"                                         KINFER_ERR_CONFIG
 *   "models/foo/config.json: missing"                 KINFER_ERR_CONFIG
 *   "models/foo/config.json: invalid JSON at line 3 column 1: ..."
 *                                                     KINFER_ERR_CONFIG
 *   "models: no model directories"                    KINFER_ERR_CONFIG
 *   "models: No such file or directory"               KINFER_ERR_IO
 *   "models/foo: <kinfer_models_load's message>"      its code
 */
enum kinfer_err kinfer_repo_load(struct kinfer_models *ms, const char *dir,
                                 char *err, size_t errsize)
    __attribute__((warn_unused_result));

#endif
