/* The inference stage of a worker: a pool of threads that decode each
 * request, run it on its model -- directly, or through the model's dynamic
 * batcher when its max_batch_size is over 1 -- and hand the outcome to the
 * caller's callbacks.  It knows nothing of Kafka: the worker feeds it
 * consumed messages and produces what the callbacks receive; the batching
 * benchmark feeds it generated load.
 *
 * Threads: submit, drain and free from one thread (the worker's poll
 * thread).  Callbacks run on the stage's threads or on a batcher's timer
 * thread, never with a lock of the stage held; every submitted job gets
 * exactly one of them (none when admit skips it).
 */
#ifndef KINFER_STAGE_H
#define KINFER_STAGE_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/backend.h"
#include "kinfer/error.h"
#include "kinfer/model.h"
#include "kinfer/host.h"
#include "kinfer/request.h"

struct kinfer_stage;

/* job is the caller's, opaque to the stage; arg is ops->arg.  req and item
 * are borrowed for the call. */
struct kinfer_stage_ops {
    /* Optional, called first: return 0 to skip the job (no other callback
     * follows, the caller settles it). */
    int (*admit)(void *job, void *arg);
    /* The request could not be decoded.  req holds what could be read (id,
     * model_name); why is the precise reason. */
    void (*rejected)(void *job, const struct kinfer_request *req,
                     const char *why, void *arg);
    /* Decoded, but it names no loaded model; why says so. */
    void (*unknown_model)(void *job, const struct kinfer_request *req,
                          const char *why, void *arg);
    /* Optional, called once the request is decoded and its model found,
     * right before it runs (or joins its batcher): return 0 to skip it (no
     * other callback follows, the caller settles the job). */
    int (*ready)(void *job, const struct kinfer_request *req, void *arg);
    /* Ran on model m: item holds the outputs or a per-request failure. */
    void (*answered)(void *job, const struct kinfer_request *req,
                     const struct kinfer_model *m,
                     const struct kinfer_infer_item *item, void *arg);
    /* Optional, for metrics: job was the index-th of the size requests of
     * one backend call of m, which started at start_ns (kinfer_now_ns's
     * clock) and took run_ns.  Called just before job's answered, on the
     * same thread. */
    void (*ran)(void *job, const struct kinfer_model *m, int64_t start_ns,
                int64_t run_ns, size_t index, size_t size, void *arg);
    void *arg;
    /* Optional, before decoding: return 1 with the JSON header's length in
     * *json_len when the job's request is in the binary tensor form, 0
     * when it is plain JSON, -1 with a reason in why when the length it
     * carries is unusable (the job is then rejected). */
    int (*json_length)(void *job, size_t *json_len, char *why, size_t whysize,
                       void *arg);
};

struct kinfer_stage_config {
    size_t threads;            /* >= 1 */
    size_t capacity;           /* queued jobs before submit blocks, >= 1 */
    const char *default_model; /* for requests without model_name */
    struct kinfer_limits limits;
};

/* Totals since the stage started. */
struct kinfer_stage_stats {
    unsigned long long decoded;   /* requests decoded, valid or not */
    unsigned long long decode_ns; /* time spent decoding them */
    unsigned long long runs;      /* backend calls */
    unsigned long long run_items; /* requests in those calls */
    unsigned long long run_ns;    /* time spent in those calls */
};

/* Start the threads and one batcher per batching model of models (borrowed;
 * it and cfg->default_model must outlive the stage). */
enum kinfer_err kinfer_stage_new(const struct kinfer_stage_config *cfg,
                                 const struct kinfer_models *models,
                                 const struct kinfer_stage_ops *ops,
                                 struct kinfer_stage **out)
    __attribute__((warn_unused_result));

/* Queue job, whose request is buf[0..len) (borrowed until job's callback
 * returns).  Blocks while the queue is full.  KINFER_ERR_CLOSED after
 * kinfer_stage_drain: the job was not queued and gets no callback. */
enum kinfer_err kinfer_stage_submit(struct kinfer_stage *s, void *job,
                                    const void *buf, size_t len)
    __attribute__((warn_unused_result));

/* Like submit, for a request decoded already (borrowed likewise): nothing
 * is decoded.  For benchmarks that measure the model alone. */
enum kinfer_err kinfer_stage_submit_decoded(struct kinfer_stage *s, void *job,
                                            const struct kinfer_request *req)
    __attribute__((warn_unused_result));

/* Jobs queued and not yet started. */
size_t kinfer_stage_queued(struct kinfer_stage *s);

/* Refuse further submits, finish every queued job and run every request
 * still gathering in a batcher, on this thread if need be.  On return
 * every submitted job has had its callback.  Idempotent. */
void kinfer_stage_drain(struct kinfer_stage *s);

void kinfer_stage_get_stats(struct kinfer_stage *s,
                            struct kinfer_stage_stats *st);

/* Batches run and requests in them for model m; 0 and 0 when m does not
 * batch. */
void kinfer_stage_batch_counts(struct kinfer_stage *s,
                               const struct kinfer_model *m, size_t *batches,
                               size_t *items);

/* Drain and free.  NULL is a no-op. */
void kinfer_stage_free(struct kinfer_stage *s);

#endif
