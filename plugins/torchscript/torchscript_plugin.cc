/* kinfer backend "torchscript": TorchScript modules (.pt, saved with
 * torch.jit.save) through Debian's libtorch (1.13, CPU).  Built as the
 * plugin kinfer_torchscript.so and loaded with --plugin; C++ inside, the C
 * ABI of backend.h outside.
 *
 * config.json (besides kinfer's own fields, see repo.h):
 *   "model"    the .pt file, relative to the model directory (required)
 *   "inputs"   the request inputs, each {"name", "datatype", "shape"}
 *              (required); shape[0] is -1, the batch dimension, and -1
 *              elsewhere means any size
 *   "outputs"  the result outputs, each {"name", "datatype", "shape"}
 *              (required), shape[0] -1 likewise
 *   "map"      how they meet forward(): "position" (default): inputs[i]
 *              is forward's i-th argument, outputs[i] the i-th element of
 *              the tuple or list it returns (or the tensor it returns, for
 *              one output); "name": each input is passed as the forward()
 *              argument of the same name, and forward() returns a
 *              Dict[str, Tensor] whose keys are the output names
 *   "threads"  intra-op threads per call, 1 .. 64; default 1 (kinfer's
 *              pool already runs calls in parallel)
 * Datatypes map to torch's: BOOL, UINT8, INT8, INT16, INT32, INT64, FP16,
 * BF16, FP32, FP64 (torch 1.13 has no UINT16/32/64).  A request's input
 * must have the declared datatype and rank, and the declared size in every
 * dimension that is not -1; all its inputs share the first dimension (its
 * rows).
 *
 * Batching: the requests of a batch whose inputs agree in datatype and in
 * every dimension but the first are concatenated along dimension 0 and
 * run as one forward(); each output is split back by rows.  Requests that
 * differ (two image sizes, say) run as separate forward() calls.  A model
 * whose outputs do not have one row per input row cannot be batched:
 * serve it with max_batch_size 1.
 *
 * Threads: no lock.  forward() on one module may run on several threads at
 * once (TorchScript's executor is thread-safe; the module is not trained
 * here and runs under InferenceMode).  Each inference thread sets its own
 * intra-op thread count (an OpenMP setting is per thread) before its first
 * call; the inter-op pool is set to one thread when the first model loads.
 *
 * C++ exceptions never cross the C ABI: every entry point catches them.
 */
#include <algorithm>
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <string>
#include <utility>
#include <vector>

#include <ATen/Parallel.h>
#include <jansson.h>
#include <torch/script.h>
#include <torch/version.h>

#include "common/ports.h"
#include "kinfer/backend.h"
#include "kinfer/log.h"

extern "C" __attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

namespace
{

constexpr int max_threads = 64;

/* A c10::Error's message without the C++ backtrace it carries. */
const char *what_of(const std::exception &e)
{
    const c10::Error *ce = dynamic_cast<const c10::Error *>(&e);
    return ce != nullptr ? ce->what_without_backtrace() : e.what();
}

using kinfer_ports::fail;
using kinfer_ports::port;
using kinfer_ports::say;

/* kinfer's datatypes and torch's (1.13 has no UINT16/32/64). */
const kinfer_ports::dtype_name dtypes[] = {
    {"BOOL", KINFER_DTYPE_BOOL},   {"UINT8", KINFER_DTYPE_UINT8},
    {"INT8", KINFER_DTYPE_INT8},   {"INT16", KINFER_DTYPE_INT16},
    {"INT32", KINFER_DTYPE_INT32}, {"INT64", KINFER_DTYPE_INT64},
    {"FP16", KINFER_DTYPE_FP16},   {"BF16", KINFER_DTYPE_BF16},
    {"FP32", KINFER_DTYPE_FP32},   {"FP64", KINFER_DTYPE_FP64},
};
const c10::ScalarType scalar_types[] = {
    c10::ScalarType::Bool,   c10::ScalarType::Byte,     c10::ScalarType::Char,
    c10::ScalarType::Short,  c10::ScalarType::Int,      c10::ScalarType::Long,
    c10::ScalarType::Half,   c10::ScalarType::BFloat16, c10::ScalarType::Float,
    c10::ScalarType::Double,
};
constexpr size_t n_dtypes = sizeof dtypes / sizeof dtypes[0];
static_assert(n_dtypes == sizeof scalar_types / sizeof scalar_types[0],
              "one torch type per datatype");

c10::ScalarType scalar_type(enum kinfer_dtype dt)
{
    for (size_t i = 0; i < n_dtypes; i++)
        if (dtypes[i].dt == dt)
            return scalar_types[i];
    return c10::ScalarType::Undefined; /* parse_ports allows none other */
}

struct ts_model {
    const struct kinfer_host *host = nullptr;
    torch::jit::Module module;
    std::vector<port> inputs, outputs;
    bool by_name = false;
    int threads = 1;
    size_t n_args = 0; /* forward()'s arguments, self excluded */
    std::vector<struct kinfer_tensor_desc> io;
};

/* Settings from config.json; the model file's path goes to path. */
bool parse_config(const char *text, const char *dir, ts_model &m,
                  std::string &path, char *err, size_t errsize)
{
    json_error_t jerr;
    json_t *root = json_loads(text ? text : "{}", 0, &jerr);
    if (!json_is_object(root)) {
        say(err, errsize, "config: invalid JSON at line %d: %s", jerr.line,
            jerr.text);
        json_decref(root);
        return false;
    }
    bool ok = false;
    const json_t *file = json_object_get(root, "model");
    const json_t *map = json_object_get(root, "map");
    const json_t *thr = json_object_get(root, "threads");
    if (!json_is_string(file) || json_string_length(file) == 0) {
        say(err, errsize,
            "model: expected the .pt file's name (relative to the model "
            "directory)");
    } else if (map != nullptr &&
               (!json_is_string(map) ||
                (std::strcmp(json_string_value(map), "position") != 0 &&
                 std::strcmp(json_string_value(map), "name") != 0))) {
        say(err, errsize, "map: expected \"position\" or \"name\"");
    } else if (thr != nullptr &&
               (!json_is_integer(thr) || json_integer_value(thr) < 1 ||
                json_integer_value(thr) > max_threads)) {
        say(err, errsize, "threads: expected an integer from 1 to %d",
            max_threads);
    } else if (kinfer_ports::parse_ports(root, "inputs", dtypes, n_dtypes,
                                         m.inputs, err, errsize) &&
               kinfer_ports::parse_ports(root, "outputs", dtypes, n_dtypes,
                                         m.outputs, err, errsize)) {
        path = json_string_value(file);
        if (path[0] != '/' && dir != nullptr)
            path = std::string(dir) + "/" + path;
        m.by_name =
            map != nullptr && std::strcmp(json_string_value(map), "name") == 0;
        m.threads = thr ? (int)json_integer_value(thr) : 1;
        ok = true;
    }
    json_decref(root);
    return ok;
}

/* Match the declared inputs with forward()'s arguments. */
bool bind_arguments(ts_model &m, const std::string &path, char *err,
                    size_t errsize)
{
    const c10::FunctionSchema &schema =
        m.module.get_method("forward").function().getSchema();
    const std::vector<c10::Argument> &args = schema.arguments();
    m.n_args = args.empty() ? 0 : args.size() - 1; /* args[0] is self */
    if (m.inputs.size() != m.n_args) {
        say(err, errsize,
            "inputs: %zu declared, but %s's forward() takes %zu argument(s)",
            m.inputs.size(), path.c_str(), m.n_args);
        return false;
    }
    for (size_t i = 0; i < m.inputs.size(); i++) {
        port &p = m.inputs[i];
        if (!m.by_name) {
            p.arg = i;
            continue;
        }
        size_t k = 1;
        while (k < args.size() && args[k].name() != p.name)
            k++;
        if (k == args.size()) {
            say(err, errsize,
                "inputs[%zu]: forward() of %s has no argument \"%s\" "
                "(map \"name\")",
                i, path.c_str(), p.name.c_str());
            return false;
        }
        p.arg = k - 1;
    }
    return true;
}

void build_desc(ts_model &m)
{
    kinfer_ports::port_descs(m.inputs, m.io);
    kinfer_ports::port_descs(m.outputs, m.io);
}

enum kinfer_err ts_create(const struct kinfer_host *host, const char *dir,
                          const char *config_json, void **out, char *err,
                          size_t errsize)
{
    try {
        std::unique_ptr<ts_model> m(new ts_model);
        m->host = host;
        std::string path;
        if (!parse_config(config_json, dir, *m, path, err, errsize))
            return KINFER_ERR_CONFIG;
        /* The inter-op pool runs only forked work (torch.jit.fork): one
         * thread.  It can be set once per process, before first use. */
        static std::once_flag interop;
        std::call_once(interop, [host] {
            try {
                at::set_num_interop_threads(1);
            } catch (const std::exception &e) {
                host->log(KINFER_LOG_WARN,
                          "torchscript: inter-op threads stay as they are: %s",
                          what_of(e));
            }
        });
        try {
            m->module = torch::jit::load(path, torch::kCPU);
        } catch (const std::bad_alloc &) {
            throw;
        } catch (const std::exception &e) {
            say(err, errsize, "model: %s: %s", path.c_str(), what_of(e));
            return KINFER_ERR_MODEL;
        }
        m->module.eval();
        if (!m->module.find_method("forward")) {
            say(err, errsize, "model: %s has no forward() method",
                path.c_str());
            return KINFER_ERR_MODEL;
        }
        if (!bind_arguments(*m, path, err, errsize))
            return KINFER_ERR_CONFIG;
        build_desc(*m);
        host->log(KINFER_LOG_INFO,
                  "torchscript: %s: forward() with %zu argument(s) mapped "
                  "by %s, %zu output(s), %d intra-op thread(s), libtorch "
                  "%d.%d.%d",
                  path.c_str(), m->n_args, m->by_name ? "name" : "position",
                  m->outputs.size(), m->threads, TORCH_VERSION_MAJOR,
                  TORCH_VERSION_MINOR, TORCH_VERSION_PATCH);
        *out = m.release();
        return KINFER_OK;
    } catch (const std::bad_alloc &) {
        say(err, errsize, "out of memory");
        return KINFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        say(err, errsize, "torchscript: %s", what_of(e));
        return KINFER_ERR_MODEL;
    } catch (...) {
        say(err, errsize, "torchscript: unknown exception");
        return KINFER_ERR_MODEL;
    }
}

void ts_destroy(void *model)
{
    delete static_cast<ts_model *>(model);
}

at::Tensor view_of(const struct kinfer_tensor *x, c10::ScalarType st)
{
    /* Borrowed, read-only: the module gets the request's bytes without a
     * copy (a module that wrote to its inputs would write into the
     * request, which nothing reads again). */
    return torch::from_blob(x->data,
                            c10::IntArrayRef(x->shape, (size_t)x->ndim),
                            torch::TensorOptions().dtype(st));
}

/* The outputs of forward()'s result, in declaration order.  Throws with a
 * message when it does not match the declaration. */
std::vector<at::Tensor> result_tensors(const ts_model &m, const c10::IValue &r)
{
    std::vector<at::Tensor> outs;
    if (m.by_name) {
        TORCH_CHECK(r.isGenericDict(), "forward() returned ", r.tagKind(),
                    ", but map \"name\" needs a Dict[str, Tensor]");
        c10::Dict<c10::IValue, c10::IValue> d = r.toGenericDict();
        for (const port &p : m.outputs) {
            auto at = d.find(c10::IValue(p.name));
            TORCH_CHECK(at != d.end() && at->value().isTensor(),
                        "forward()'s dict has no tensor \"", p.name, "\"");
            outs.push_back(at->value().toTensor());
        }
        return outs;
    }
    if (r.isTensor()) {
        outs.push_back(r.toTensor());
    } else if (r.isTuple()) {
        for (const c10::IValue &v : r.toTupleRef().elements()) {
            TORCH_CHECK(v.isTensor(), "forward() returned a tuple holding ",
                        v.tagKind());
            outs.push_back(v.toTensor());
        }
    } else if (r.isTensorList()) {
        for (const at::Tensor &t : r.toTensorVector())
            outs.push_back(t);
    } else {
        TORCH_CHECK(false, "forward() returned ", r.tagKind(),
                    ", not a tensor or a tuple of tensors");
    }
    TORCH_CHECK(outs.size() == m.outputs.size(), "forward() returned ",
                outs.size(), " tensor(s), the config declares ",
                m.outputs.size());
    return outs;
}

/* Run one group as one forward() and attach every item's outputs.
 * Returns false only when out of memory; throws when the model refuses
 * the inputs or its outputs do not match the config. */
bool run_group(const ts_model &m, struct kinfer_infer_item *items,
               const kinfer_ports::group &g)
{
    std::vector<c10::IValue> args(m.n_args);
    for (size_t i = 0; i < m.inputs.size(); i++) {
        c10::ScalarType st = scalar_type(m.inputs[i].dt);
        if (g.items.size() == 1) {
            args[m.inputs[i].arg] = view_of(g.xs[0][i], st);
            continue;
        }
        std::vector<at::Tensor> parts;
        for (size_t k = 0; k < g.items.size(); k++)
            parts.push_back(view_of(g.xs[k][i], st));
        args[m.inputs[i].arg] = torch::cat(parts, 0);
    }
    std::vector<at::Tensor> outs = result_tensors(
        m, const_cast<torch::jit::Module &>(m.module).forward(std::move(args)));
    std::vector<const unsigned char *> data;
    std::vector<size_t> row_bytes;
    std::vector<std::vector<int64_t>> dims;
    for (size_t j = 0; j < outs.size(); j++) {
        const port &p = m.outputs[j];
        at::Tensor &t = outs[j];
        std::string want = kinfer_ports::port_text(p);
        TORCH_CHECK(t.scalar_type() == scalar_type(p.dt), "output \"", p.name,
                    "\": forward() gave ", t.scalar_type(),
                    ", the config declares ", want);
        bool fits = t.dim() == (int64_t)p.shape.size() && t.size(0) == g.total;
        for (size_t d = 1; fits && d < p.shape.size(); d++)
            fits = p.shape[d] == -1 || p.shape[d] == t.size((int64_t)d);
        TORCH_CHECK(fits, "output \"", p.name, "\": forward() gave shape ",
                    t.sizes(), " for ", g.total,
                    " input row(s); the config declares ", want,
                    " (one row per input row)");
        t = t.contiguous();
        data.push_back(static_cast<const unsigned char *>(t.data_ptr()));
        row_bytes.push_back(g.total ? t.nbytes() / (size_t)g.total : 0);
        dims.emplace_back(t.sizes().begin() + 1, t.sizes().end());
    }
    return kinfer_ports::attach_outputs(m.host, m.outputs, items, g, data,
                                        row_bytes, dims);
}

enum kinfer_err ts_infer(void *model, struct kinfer_infer_item *items, size_t n)
{
    const ts_model &m = *static_cast<const ts_model *>(model);
    try {
        /* OpenMP's thread count is per calling thread. */
        thread_local int threads_set = 0;
        if (threads_set != m.threads) {
            at::set_num_threads(m.threads);
            threads_set = m.threads;
        }
        c10::InferenceMode guard;
        std::vector<kinfer_ports::group> groups =
            kinfer_ports::group_items(m.host, m.inputs, items, n);
        for (const kinfer_ports::group &g : groups) {
            try {
                if (!run_group(m, items, g))
                    return KINFER_ERR_NOMEM;
            } catch (const std::bad_alloc &) {
                return KINFER_ERR_NOMEM;
            } catch (const std::exception &e) {
                /* The model refused these inputs: each request of the
                 * group learns why; other groups go on. */
                for (size_t i : g.items)
                    if (!items[i].failed)
                        fail(items[i], "torchscript: %s", what_of(e));
            }
        }
        return KINFER_OK;
    } catch (const std::bad_alloc &) {
        return KINFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        m.host->log(KINFER_LOG_ERROR, "torchscript: %s", what_of(e));
        return KINFER_ERR_MODEL;
    } catch (...) {
        m.host->log(KINFER_LOG_ERROR, "torchscript: unknown exception");
        return KINFER_ERR_MODEL;
    }
}

enum kinfer_err ts_describe(void *model, struct kinfer_model_io *io)
{
    ts_model *m = static_cast<ts_model *>(model);
    io->inputs = m->io.data();
    io->n_inputs = m->inputs.size();
    io->outputs = m->io.data() + m->inputs.size();
    io->n_outputs = m->outputs.size();
    return KINFER_OK;
}

const struct kinfer_backend torchscript_backend = {
    KINFER_BACKEND_ABI_VERSION,
    "torchscript",
    ts_create,
    ts_infer,
    ts_destroy,
    ts_describe,
};

} // namespace

/* The only exported symbol (the library is built with hidden
 * visibility).  Refuses a host of another ABI by returning NULL. */
const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == nullptr || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return nullptr;
    return &torchscript_backend;
}
