/* An inference request in the JSON shape of the Open Inference Protocol
 * (KServe V2), decoded: its id, model name, parameters and input tensors.
 * struct kinfer_request is part of the backend ABI (backend.h): a backend
 * reads it, so this header holds only types and a plugin may include it.
 * The codec that builds requests from JSON and writes results is the
 * host's, in host.h.
 *
 * Threads: a request has no lock.  The inference thread that decodes it
 * owns it; while a backend runs it (on that thread or on the thread that
 * runs its batch) it is read-only and borrowed, and it is freed only after
 * the backend returned.
 */
#ifndef KINFER_REQUEST_H
#define KINFER_REQUEST_H

#include <stddef.h>
#include <stdint.h>

#include "kinfer/tensor.h"

#ifdef __cplusplus
extern "C" {
#endif

enum kinfer_param_kind {
    KINFER_PARAM_NUMBER, /* JSON integer or real: number (and integer) */
    KINFER_PARAM_STRING, /* string */
    KINFER_PARAM_BOOL,   /* boolean */
    KINFER_PARAM_OTHER   /* null, array or object: kept by name only */
};

/* One entry of the request's "parameters" object. */
struct kinfer_param {
    char *name; /* owned */
    enum kinfer_param_kind kind;
    double number;   /* NUMBER */
    int is_integer;  /* NUMBER given as a JSON integer */
    int64_t integer; /* NUMBER when is_integer */
    char *string;    /* STRING: owned; else NULL */
    int boolean;     /* BOOL */
};

/* One entry of the request's "outputs" (ABI 2): an output the client asked
 * for, with its own "parameters" (binary_data, ...). */
struct kinfer_requested_output {
    char *name;                  /* owned */
    struct kinfer_param *params; /* owned array; names are unique */
    size_t n_params;
};

struct kinfer_request {
    char *id;                    /* owned; NULL when absent */
    char *model_name;            /* owned; NULL when absent */
    struct kinfer_param *params; /* owned array; names are unique */
    size_t n_params;
    struct kinfer_tensor *inputs; /* owned array; names are unique */
    size_t n_inputs;
    /* --- Added in ABI 2 --- */
    char *model_version; /* owned; NULL when absent (the model's own) */
    /* The outputs asked for, names unique; NULL and 0 when the request has
     * no "outputs" (every output).  kinfer drops the others from the result
     * itself, so a backend may ignore this or use it to skip work. */
    struct kinfer_requested_output *outputs;
    size_t n_outputs;
};

#ifdef __cplusplus
}
#endif
#endif
