/* Shared fixtures of the dense-backend tests: a host table of their own
 * (so the backends are tested through the ABI alone, as a plugin would
 * be), OIP request JSON turned into struct kinfer_request, and checks of
 * results against the NumPy answers written by ops/models/gen_dense.py.
 *
 * Tolerance for FP32 outputs: |got - want| <= 1e-5 + 1e-4 * |want|
 * (absolute 1e-5, relative 1e-4); INT64 outputs must be equal.
 */
#ifndef KINFER_BK_TEST_H
#define KINFER_BK_TEST_H

#include <jansson.h>
#include <stddef.h>

#include "kinfer/backend.h"

#define BK_TOL_ABS 1e-5
#define BK_TOL_REL 1e-4

/* The host table the tests hand to backends. */
const struct kinfer_host *bk_host(void);

/* The whole file at path, NUL-terminated; *len (may be NULL) gets its
 * size.  Fails the test when it cannot be read.  Caller frees. */
char *bk_read_file(const char *path, size_t *len);

/* gen/models/<name>: the model directory.  Caller frees. */
char *bk_model_dir(const char *gen, const char *name);

/* Create a model of backend b from gen/models/<name>, with its
 * config.json edited by patch (an object whose fields replace the
 * config's; NULL for none).  Fails the test when create fails. */
void *bk_model_load(const struct kinfer_backend *b, const char *gen,
                    const char *name, const json_t *patch);

/* Try to create a model from dir and the config text; returns the code
 * and leaves the message in err.  On success the model is destroyed. */
enum kinfer_err bk_model_try(const struct kinfer_backend *b, const char *dir,
                             const char *config, char *err, size_t errsize);

/* gen/expected/<name>.json, an array of cases. */
json_t *bk_cases_load(const char *gen, const char *name);

/* A batch built from cases: requests decoded from JSON and the items the
 * backend fills. */
struct bk_batch {
    struct kinfer_request *reqs;
    struct kinfer_infer_item *items;
    size_t n;
};

/* One item per case, in order, from cases[first .. first + n). */
void bk_batch_init(struct bk_batch *bb, const json_t *cases, size_t first,
                   size_t n);
void bk_batch_clear(struct bk_batch *bb);

/* Run the batch through b on model; the call itself must succeed. */
void bk_batch_run(const struct kinfer_backend *b, void *model,
                  struct bk_batch *bb);

/* Check item against the expected case (outputs or error substring). */
void bk_check_case(const struct kinfer_infer_item *item, const json_t *c);

/* Check that two answered items carry the same outputs (FP32 within the
 * tolerance, the rest exactly). */
void bk_check_same(const struct kinfer_infer_item *a,
                   const struct kinfer_infer_item *b);

/* Run every case of the file, first one per batch, then all in one batch
 * (item errors must stay with their item), then with the first eight as
 * one batch against eight batches of one (batch invariance). */
void bk_check_model(const struct kinfer_backend *b, void *model,
                    const json_t *cases);

/* bk_check_threads on model <name> of gen with its expected cases. */
void bk_check_threads_file(const struct kinfer_backend *b, const char *gen,
                           const char *name, int nthreads);

/* The descriptor's fixed parts: ABI version, name, destroy(NULL) a no-op. */
void bk_check_descriptor(const struct kinfer_backend *b, const char *name);

/* Run the cases as one batch on each of nthreads threads at once, each
 * thread several times, and check every answer. */
void bk_check_threads(const struct kinfer_backend *b, void *model,
                      const json_t *cases, int nthreads);

#endif
