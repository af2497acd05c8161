/* Shared by the C++ backend plugins that serve models with declared
 * inputs and outputs (torchscript, onnx): config "inputs"/"outputs"
 * entries {"name", "datatype", "shape"} with the batch dimension first,
 * checking a request against them, and grouping the requests of a batch
 * that can run as one call (same datatype and same size in every dimension
 * but the first).  Header-only, compiled into each plugin (they link
 * nothing of kinfer and nothing of each other); C++17, no exceptions
 * thrown (errors go to the caller's buffer or the item).
 */
#ifndef KINFER_PLUGINS_PORTS_H
#define KINFER_PLUGINS_PORTS_H

#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include <jansson.h>

#include "kinfer/backend.h"

namespace kinfer_ports
{

__attribute__((format(printf, 3, 4))) inline void say(char *buf, size_t size,
                                                      const char *fmt, ...)
{
    if (size == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(buf, size, fmt, ap);
    va_end(ap);
    if (n < 0)
        buf[0] = '\0';
}

/* Mark one request of a batch failed with a message. */
__attribute__((format(printf, 2, 3))) inline void
fail(struct kinfer_infer_item &it, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    if (vsnprintf(it.error, sizeof it.error, fmt, ap) < 0)
        it.error[0] = '\0';
    va_end(ap);
    it.failed = 1;
}

/* A datatype a plugin accepts: its OIP name and kinfer's enum. */
struct dtype_name {
    const char *name;
    enum kinfer_dtype dt;
};

/* One declared input or output. */
struct port {
    std::string name;
    enum kinfer_dtype dt = KINFER_DTYPE_INVALID;
    const char *dt_name = "";
    std::vector<int64_t> shape; /* shape[0] == -1: the batch dimension */
    size_t arg = 0;             /* the backend's own index for it */
};

inline std::string shape_text(const int64_t *shape, size_t ndim)
{
    std::string s = "[";
    for (size_t d = 0; d < ndim; d++)
        s += (d ? "," : "") + std::to_string(shape[d]);
    return s + "]";
}

/* "FP32 [-1,3]" */
inline std::string port_text(const port &p)
{
    return std::string(p.dt_name) + " " +
           shape_text(p.shape.data(), p.shape.size());
}

/* Parse config key ("inputs" or "outputs") of root into out: a non-empty
 * array of {"name", "datatype", "shape"} with unique names, datatypes
 * among allowed[0..n_allowed), shape[0] -1 and the other sizes positive
 * or -1.  Returns false with a message naming the entry in err. */
inline bool parse_ports(const json_t *root, const char *key,
                        const dtype_name *allowed, size_t n_allowed,
                        std::vector<port> &out, char *err, size_t errsize)
{
    const json_t *arr = json_object_get(root, key);
    if (!json_is_array(arr) || json_array_size(arr) == 0) {
        say(err, errsize,
            "%s: expected a non-empty array of {\"name\", \"datatype\", "
            "\"shape\"}",
            key);
        return false;
    }
    std::string names;
    for (size_t k = 0; k < n_allowed; k++)
        names += std::string(k ? ", " : "") + allowed[k].name;
    for (size_t i = 0; i < json_array_size(arr); i++) {
        const json_t *e = json_array_get(arr, i);
        const json_t *name = json_object_get(e, "name");
        const json_t *dt = json_object_get(e, "datatype");
        const json_t *shape = json_object_get(e, "shape");
        port p;
        if (!json_is_object(e) || !json_is_string(name) ||
            json_string_length(name) == 0) {
            say(err, errsize,
                "%s[%zu]: expected {\"name\", \"datatype\", \"shape\"}", key,
                i);
            return false;
        }
        p.name = json_string_value(name);
        for (size_t k = 0; json_is_string(dt) && k < n_allowed; k++)
            if (std::strcmp(allowed[k].name, json_string_value(dt)) == 0) {
                p.dt = allowed[k].dt;
                p.dt_name = allowed[k].name;
            }
        if (p.dt == KINFER_DTYPE_INVALID) {
            say(err, errsize, "%s[%zu].datatype: expected one of %s", key, i,
                names.c_str());
            return false;
        }
        size_t nd = json_array_size(shape);
        if (!json_is_array(shape) || nd < 1 || nd > KINFER_MAX_DIMS) {
            say(err, errsize, "%s[%zu].shape: expected 1 to %d dimensions", key,
                i, KINFER_MAX_DIMS);
            return false;
        }
        for (size_t d = 0; d < nd; d++) {
            const json_t *v = json_array_get(shape, d);
            json_int_t x = json_is_integer(v) ? json_integer_value(v) : -2;
            if (x < -1 || x == 0 || (d == 0 && x != -1)) {
                say(err, errsize, "%s[%zu].shape[%zu]: expected %s", key, i, d,
                    d == 0 ? "-1 (the batch dimension)"
                           : "a positive size or -1 (any)");
                return false;
            }
            p.shape.push_back((int64_t)x);
        }
        for (const port &q : out)
            if (q.name == p.name) {
                say(err, errsize, "%s[%zu]: name \"%s\" appears twice", key, i,
                    p.name.c_str());
                return false;
            }
        out.push_back(std::move(p));
    }
    return true;
}

/* Describe ports into descs (which must outlive the model's describe). */
inline void port_descs(const std::vector<port> &ports,
                       std::vector<struct kinfer_tensor_desc> &descs)
{
    for (const port &p : ports) {
        struct kinfer_tensor_desc d = {};
        d.name = p.name.c_str();
        d.dtype = p.dt;
        d.ndim = (int)p.shape.size();
        for (size_t k = 0; k < p.shape.size(); k++)
            d.shape[k] = p.shape[k];
        descs.push_back(d);
    }
}

/* The item's tensor for each declared input, in declaration order, or an
 * empty vector with the item failed.  rows: their common first
 * dimension. */
inline std::vector<const struct kinfer_tensor *>
item_inputs(const struct kinfer_host *host, const std::vector<port> &inputs,
            struct kinfer_infer_item &it, int64_t &rows)
{
    std::vector<const struct kinfer_tensor *> xs;
    const struct kinfer_request *req = it.request;
    rows = -1;
    for (const port &p : inputs) {
        const struct kinfer_tensor *x = nullptr;
        for (size_t i = 0; i < req->n_inputs; i++)
            if (req->inputs[i].name && p.name == req->inputs[i].name)
                x = &req->inputs[i];
        if (x == nullptr) {
            fail(it, "model needs input \"%s\" (%s)", p.name.c_str(),
                 port_text(p).c_str());
            return {};
        }
        bool fits = x->dtype == p.dt && x->ndim == (int)p.shape.size() &&
                    x->shape[0] >= 1;
        for (int d = 1; fits && d < x->ndim; d++)
            fits = p.shape[d] == -1 || p.shape[d] == x->shape[d];
        if (!fits) {
            fail(it, "input \"%s\": expected %s, got %s %s", p.name.c_str(),
                 port_text(p).c_str(), host->dtype_name(x->dtype),
                 shape_text(x->shape, (size_t)x->ndim).c_str());
            return {};
        }
        if (rows != -1 && x->shape[0] != rows) {
            fail(it,
                 "input \"%s\": %lld rows, but the inputs before it have "
                 "%lld",
                 p.name.c_str(), (long long)x->shape[0], (long long)rows);
            return {};
        }
        rows = x->shape[0];
        xs.push_back(x);
    }
    return xs;
}

/* Requests of a batch that can run as one call. */
struct group {
    std::vector<size_t> items; /* indexes into the batch */
    std::vector<int64_t> rows; /* per item */
    std::vector<std::vector<const struct kinfer_tensor *>> xs; /* per item */
    int64_t total = 0;                                         /* rows */
};

inline bool same_trailing(const struct kinfer_tensor *a,
                          const struct kinfer_tensor *b)
{
    if (a->ndim != b->ndim)
        return false;
    for (int d = 1; d < a->ndim; d++)
        if (a->shape[d] != b->shape[d])
            return false;
    return true;
}

/* Check every item of items[0..n) (failing those that do not fit) and
 * group the rest by their inputs' trailing shapes, in batch order. */
inline std::vector<group> group_items(const struct kinfer_host *host,
                                      const std::vector<port> &inputs,
                                      struct kinfer_infer_item *items, size_t n)
{
    std::vector<group> groups;
    for (size_t i = 0; i < n; i++) {
        int64_t rows;
        std::vector<const struct kinfer_tensor *> xs =
            item_inputs(host, inputs, items[i], rows);
        if (xs.empty())
            continue;
        group *g = nullptr;
        for (group &c : groups) {
            bool same = true;
            for (size_t k = 0; same && k < xs.size(); k++)
                same = same_trailing(c.xs[0][k], xs[k]);
            if (same) {
                g = &c;
                break;
            }
        }
        if (g == nullptr) {
            groups.emplace_back();
            g = &groups.back();
        }
        g->items.push_back(i);
        g->rows.push_back(rows);
        g->total += rows;
        g->xs.push_back(std::move(xs));
    }
    return groups;
}

/* Attach to each item of g its rows of the outputs: out[j] holds
 * g.total rows of row_bytes[j] bytes each, shaped [g.total, dims[j]...]
 * (dims[j] the trailing sizes).  Returns false when out of memory. */
inline bool attach_outputs(const struct kinfer_host *h,
                           const std::vector<port> &outputs,
                           struct kinfer_infer_item *items, const group &g,
                           const std::vector<const unsigned char *> &out,
                           const std::vector<size_t> &row_bytes,
                           const std::vector<std::vector<int64_t>> &dims)
{
    int64_t row = 0;
    for (size_t k = 0; k < g.items.size(); k++) {
        struct kinfer_infer_item &it = items[g.items[k]];
        it.outputs = static_cast<struct kinfer_tensor *>(
            h->alloc(outputs.size() * sizeof(struct kinfer_tensor)));
        if (it.outputs == nullptr)
            return false;
        it.n_outputs = outputs.size();
        for (size_t j = 0; j < outputs.size(); j++) {
            std::vector<int64_t> shape = {g.rows[k]};
            shape.insert(shape.end(), dims[j].begin(), dims[j].end());
            if (h->tensor_init(&it.outputs[j], outputs[j].name.c_str(),
                               outputs[j].dt, (int)shape.size(),
                               shape.data()) != KINFER_OK)
                return false;
            std::memcpy(it.outputs[j].data, out[j] + (size_t)row * row_bytes[j],
                        (size_t)g.rows[k] * row_bytes[j]);
        }
        row += g.rows[k];
    }
    return true;
}

} // namespace kinfer_ports

#endif
