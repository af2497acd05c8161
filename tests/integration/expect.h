/* Expected-answer runs for the model integration tests (it_models,
 * it_backends): the cases of a generator's OUTDIR/expected/<model>.json
 * (format: the docstring of ops/models/gen_dense.py) are produced to a
 * request topic, a worker answers them, and every result read back is
 * compared with its case.  Single-threaded: every function runs on the
 * test's main thread.  The functions fail the running cmocka test on
 * anything unexpected.
 */
#ifndef KINFER_IT_EXPECT_H
#define KINFER_IT_EXPECT_H

#include <stddef.h>

#include <jansson.h>

#include "harness.h"

#define N_PARTITIONS 2
#define RESULT_TIMEOUT_MS 120000
#define STOP_TIMEOUT_MS 45000

/* FP32 within 1e-5 + 1e-4 * |want| (the tolerance of tests/backends);
 * integers and strings must be equal. */
#define TOL_ABS 1e-5
#define TOL_REL 1e-4

/* One request sent and what its result must be. */
struct exp_case {
    char label[160]; /* "<file>[i] <case name>" for messages */
    char *body;      /* request JSON, as produced */
    size_t len;
    char *id;             /* the request's id */
    char *model;          /* its model_name */
    char *want_version;   /* model_version of a success result */
    json_t *want_outputs; /* NULL: an error case */
    char *want_error;     /* substring of the error message */
    double abs_tol, rel_tol;
    unsigned results;    /* results read for this case */
    json_t *got_outputs; /* outputs of the first result, or NULL */
    char problem[640];   /* first thing found wrong, or "" */
};

/* The cases of one worker run, keyed "<prefix>-<index>". */
struct exp_run {
    char prefix[8];
    struct exp_case *cases;
    size_t n, cap;
    size_t answered;   /* cases with at least one result */
    size_t duplicates; /* results beyond the first per case */
    size_t foreign;    /* messages with a key that is not ours */
    char foreign_what[256];
};

/* strdup that fails the running test when out of memory.  Caller frees. */
char *exp_xstrdup(const char *s);

/* A new zeroed case at the end of r (default tolerances). */
struct exp_case *exp_run_add(struct exp_run *r);

/* Free every case of r and zero it. */
void exp_run_clear(struct exp_run *r);

/* Fill the request side of c from req (serialised as given). */
void exp_case_set_request(struct exp_case *c, const json_t *req);

/* The version repo/model/config.json declares, as the worker spells it
 * ("1" when absent).  Caller frees. */
char *exp_config_version(const char *repo, const char *model);

/* gen_dir/expected/<name>.json: a non-empty array of cases.  Caller
 * json_decrefs. */
json_t *exp_load(const char *gen_dir, const char *name);

/* Add case i of expected file `file` (e) to r; a success result must carry
 * model_version version. */
void exp_add(struct exp_run *r, const char *file, size_t i, const json_t *e,
             const char *version);

/* Compare an outputs array with the wanted one: the same tensor names
 * (each once), datatypes, shapes and data within the tolerance.  Returns
 * 0, or -1 with the first difference in why. */
int exp_outputs_match(const json_t *got, const json_t *want, double abs_tol,
                      double rel_tol, char *why, size_t size);

/* it_reader callback (arg: the struct exp_run): check one result against
 * the case its key names. */
void exp_on_result(const struct it_msg *m, void *arg);

/* it_reader_wait condition (arg: the struct exp_run): every case has a
 * result. */
int exp_all_answered(void *arg);

/* Produce every case of r on topic, key "<prefix>-<index>", and flush. */
void exp_produce_run(struct it_ctx *ctx, const char *topic,
                     const struct exp_run *r);

/* The worker log's "model <name>: N requests in B batches" lines (written
 * at shutdown): how many there were, the last one's numbers in *items and
 * *batches; -1 when the log cannot be read. */
int exp_batch_counts(const char *log, const char *model, size_t *items,
                     size_t *batches);

/* Wait for every result, stop worker w with SIGTERM (exit 0 expected),
 * read the rest, check every case and that group committed all of in. */
void exp_finish_run(struct it_ctx *ctx, struct it_proc *w, struct it_reader *rd,
                    struct exp_run *r, const char *in, const char *group);

/* Fresh input and output topics (N_PARTITIONS each) and a group name. */
void exp_make_topics(struct it_ctx *ctx, char *in, char *out, char *group,
                     size_t size);

#endif
