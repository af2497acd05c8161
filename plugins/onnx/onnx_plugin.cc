/* kinfer backend "onnx": ONNX models through OpenCV's DNN module (Debian's
 * libopencv-dnn-dev 4.6, CPU).  Built as the plugin kinfer_onnx.so and
 * loaded with --plugin; C++ inside, the C ABI of backend.h outside.
 *
 * Why OpenCV and not ONNX Runtime: Debian packages OpenCV's DNN module
 * with its headers, so the plugin builds from apt alone like the others;
 * ONNX Runtime is not packaged, and its PyPI wheel ships the library
 * without headers, so its C API (a table of function pointers whose
 * layout is only defined by that header) would have to be re-declared by
 * hand.  The price is OpenCV's operator coverage: FP32 tensors, and the
 * operators of common feed-forward and convolutional graphs (Gemm,
 * MatMul, Conv, pooling, activations, Softmax, Reshape/Flatten, Concat,
 * ...); a graph with an operator OpenCV lacks fails at load, naming it.
 *
 * config.json (besides kinfer's own fields, see repo.h):
 *   "model"      the .onnx file, relative to the model directory (required)
 *   "inputs"     the graph inputs, each {"name", "datatype": "FP32",
 *                "shape"} (required); shape[0] is -1, the batch dimension
 *   "outputs"    the graph outputs to return, likewise (required)
 *   "instances"  copies of the network, 1 .. 64; default 1.  An OpenCV
 *                network runs one call at a time, so concurrent calls of
 *                one model take turns on its copies.
 *   "threads"    OpenCV's worker threads, 1 .. 64; default 1 (kinfer's
 *                pool already runs calls in parallel).  Process-wide in
 *                OpenCV: the last model loaded sets it for all.
 * Inputs and outputs are matched with the graph by name.
 *
 * Batching: the requests of a batch whose inputs agree in every dimension
 * but the first are concatenated along dimension 0 and run as one
 * forward(); each output is split back by rows.  OpenCV re-plans the
 * network when the batch size changes, which costs little for small
 * graphs.
 *
 * Threads: each copy of the network has a mutex; infer takes a free copy
 * (waiting for one when all are busy), so one model is safe on several
 * threads at once.  C++ exceptions never cross the C ABI.
 */
#include <condition_variable>
#include <cstdint>
#include <cstring>
#include <exception>
#include <memory>
#include <mutex>
#include <new>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

#include <jansson.h>
#include <opencv2/core.hpp>
#include <opencv2/core/utility.hpp>
#include <opencv2/dnn.hpp>

#include "common/ports.h"
#include "kinfer/backend.h"
#include "kinfer/log.h"

extern "C" __attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

namespace
{

using kinfer_ports::fail;
using kinfer_ports::port;
using kinfer_ports::say;

constexpr int max_instances = 64;
constexpr int max_threads = 64;

const kinfer_ports::dtype_name dtypes[] = {{"FP32", KINFER_DTYPE_FP32}};

struct onnx_model {
    const struct kinfer_host *host = nullptr;
    std::vector<port> inputs, outputs;
    std::vector<cv::String> out_names;
    std::vector<cv::dnn::Net> nets; /* the copies */
    std::mutex mu;                  /* guards busy */
    std::condition_variable freed;
    std::vector<bool> busy; /* per copy */
    std::vector<struct kinfer_tensor_desc> io;
};

/* Takes a free copy of the network for the life of the object. */
class net_lease
{
  public:
    explicit net_lease(onnx_model &m) : m_(m)
    {
        std::unique_lock<std::mutex> lock(m_.mu);
        for (;;) {
            for (size_t i = 0; i < m_.busy.size(); i++)
                if (!m_.busy[i]) {
                    m_.busy[i] = true;
                    at_ = i;
                    return;
                }
            m_.freed.wait(lock);
        }
    }
    ~net_lease()
    {
        {
            std::lock_guard<std::mutex> lock(m_.mu);
            m_.busy[at_] = false;
        }
        m_.freed.notify_one();
    }
    net_lease(const net_lease &) = delete;
    net_lease &operator=(const net_lease &) = delete;
    cv::dnn::Net &net()
    {
        return m_.nets[at_];
    }

  private:
    onnx_model &m_;
    size_t at_ = 0;
};

bool parse_config(const char *text, const char *dir, onnx_model &m,
                  std::string &path, int &instances, int &threads, char *err,
                  size_t errsize)
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
    const json_t *inst = json_object_get(root, "instances");
    const json_t *thr = json_object_get(root, "threads");
    if (!json_is_string(file) || json_string_length(file) == 0) {
        say(err, errsize,
            "model: expected the .onnx file's name (relative to the model "
            "directory)");
    } else if (inst != nullptr &&
               (!json_is_integer(inst) || json_integer_value(inst) < 1 ||
                json_integer_value(inst) > max_instances)) {
        say(err, errsize, "instances: expected an integer from 1 to %d",
            max_instances);
    } else if (thr != nullptr &&
               (!json_is_integer(thr) || json_integer_value(thr) < 1 ||
                json_integer_value(thr) > max_threads)) {
        say(err, errsize, "threads: expected an integer from 1 to %d",
            max_threads);
    } else if (kinfer_ports::parse_ports(root, "inputs", dtypes, 1, m.inputs,
                                         err, errsize) &&
               kinfer_ports::parse_ports(root, "outputs", dtypes, 1, m.outputs,
                                         err, errsize)) {
        path = json_string_value(file);
        if (path[0] != '/' && dir != nullptr)
            path = std::string(dir) + "/" + path;
        instances = inst ? (int)json_integer_value(inst) : 1;
        threads = thr ? (int)json_integer_value(thr) : 1;
        ok = true;
    }
    json_decref(root);
    return ok;
}

enum kinfer_err onnx_create(const struct kinfer_host *host, const char *dir,
                            const char *config_json, void **out, char *err,
                            size_t errsize)
{
    try {
        std::unique_ptr<onnx_model> m(new onnx_model);
        m->host = host;
        std::string path;
        int instances = 1, threads = 1;
        if (!parse_config(config_json, dir, *m, path, instances, threads, err,
                          errsize))
            return KINFER_ERR_CONFIG;
        cv::setNumThreads(threads);
        for (int i = 0; i < instances; i++) {
            try {
                cv::dnn::Net net = cv::dnn::readNetFromONNX(path);
                net.setPreferableBackend(cv::dnn::DNN_BACKEND_OPENCV);
                net.setPreferableTarget(cv::dnn::DNN_TARGET_CPU);
                m->nets.push_back(std::move(net));
            } catch (const cv::Exception &e) {
                /* e.msg has no source location prefix, unlike what(). */
                say(err, errsize, "model: %s: %s", path.c_str(), e.msg.c_str());
                return KINFER_ERR_MODEL;
            }
        }
        m->busy.assign(m->nets.size(), false);
        /* Every declared output must be a layer output of the graph; an
         * input that is not a graph input fails the first forward(). */
        std::vector<cv::String> layers = m->nets[0].getLayerNames();
        for (const port &p : m->outputs) {
            if (m->nets[0].getLayerId(p.name) < 0) {
                say(err, errsize, "outputs: %s has no output \"%s\"",
                    path.c_str(), p.name.c_str());
                return KINFER_ERR_CONFIG;
            }
            m->out_names.push_back(p.name);
        }
        kinfer_ports::port_descs(m->inputs, m->io);
        kinfer_ports::port_descs(m->outputs, m->io);
        host->log(KINFER_LOG_INFO,
                  "onnx: %s: %zu layers, %d instance(s), OpenCV %s DNN, %d "
                  "thread(s)",
                  path.c_str(), layers.size(), instances, CV_VERSION,
                  cv::getNumThreads());
        *out = m.release();
        return KINFER_OK;
    } catch (const std::bad_alloc &) {
        say(err, errsize, "out of memory");
        return KINFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        say(err, errsize, "onnx: %s", e.what());
        return KINFER_ERR_MODEL;
    } catch (...) {
        say(err, errsize, "onnx: unknown exception");
        return KINFER_ERR_MODEL;
    }
}

void onnx_destroy(void *model)
{
    delete static_cast<onnx_model *>(model);
}

/* A blob for input i of group g: the request's own bytes for a group of
 * one (read-only: OpenCV copies its inputs), else a concatenation. */
cv::Mat input_blob(const kinfer_ports::group &g, size_t i)
{
    const struct kinfer_tensor *x0 = g.xs[0][i];
    std::vector<int> sizes((size_t)x0->ndim);
    for (int d = 0; d < x0->ndim; d++)
        sizes[(size_t)d] = (int)x0->shape[d];
    if (g.items.size() == 1)
        return cv::Mat(x0->ndim, sizes.data(), CV_32F, x0->data);
    sizes[0] = (int)g.total;
    cv::Mat blob(x0->ndim, sizes.data(), CV_32F);
    unsigned char *at = blob.ptr();
    for (size_t k = 0; k < g.items.size(); k++) {
        size_t bytes = g.xs[k][i]->count * sizeof(float);
        std::memcpy(at, g.xs[k][i]->data, bytes);
        at += bytes;
    }
    return blob;
}

/* Run one group and attach every item's outputs.  Returns false only when
 * out of memory; throws cv::Exception or std::runtime_error when the
 * network refuses the inputs or gives outputs that do not fit. */
bool run_group(onnx_model &m, struct kinfer_infer_item *items,
               const kinfer_ports::group &g)
{
    for (size_t i = 0; i < m.inputs.size(); i++)
        for (size_t k = 0; k < g.items.size(); k++)
            if (g.xs[k][i]->shape[0] > INT32_MAX / 2)
                throw std::runtime_error("batch too large for OpenCV");
    std::vector<cv::Mat> outs;
    {
        net_lease lease(m);
        cv::dnn::Net &net = lease.net();
        for (size_t i = 0; i < m.inputs.size(); i++)
            net.setInput(input_blob(g, i), m.inputs[i].name);
        net.forward(outs, m.out_names);
    }
    std::vector<const unsigned char *> data;
    std::vector<size_t> row_bytes;
    std::vector<std::vector<int64_t>> dims;
    for (size_t j = 0; j < outs.size(); j++) {
        const port &p = m.outputs[j];
        cv::Mat &t = outs[j];
        bool fits = t.type() == CV_32F && t.dims == (int)p.shape.size() &&
                    t.size[0] == g.total;
        for (size_t d = 1; fits && d < p.shape.size(); d++)
            fits = p.shape[d] == -1 || p.shape[d] == t.size[(int)d];
        if (!fits) {
            std::vector<int64_t> got;
            for (int d = 0; d < t.dims; d++)
                got.push_back(t.size[d]);
            throw std::runtime_error(
                "output \"" + p.name + "\": the network gave " +
                kinfer_ports::shape_text(got.data(), got.size()) + " for " +
                std::to_string(g.total) +
                " input row(s); the config "
                "declares " +
                kinfer_ports::port_text(p) + " (one row per input row)");
        }
        if (!t.isContinuous())
            t = t.clone();
        data.push_back(t.ptr());
        row_bytes.push_back(t.total() * sizeof(float) / (size_t)g.total);
        dims.emplace_back(t.size.p + 1, t.size.p + t.dims);
    }
    return kinfer_ports::attach_outputs(m.host, m.outputs, items, g, data,
                                        row_bytes, dims);
}

enum kinfer_err onnx_infer(void *model, struct kinfer_infer_item *items,
                           size_t n)
{
    onnx_model &m = *static_cast<onnx_model *>(model);
    try {
        std::vector<kinfer_ports::group> groups =
            kinfer_ports::group_items(m.host, m.inputs, items, n);
        for (const kinfer_ports::group &g : groups) {
            try {
                if (!run_group(m, items, g))
                    return KINFER_ERR_NOMEM;
            } catch (const std::bad_alloc &) {
                return KINFER_ERR_NOMEM;
            } catch (const cv::Exception &e) {
                for (size_t i : g.items)
                    if (!items[i].failed)
                        fail(items[i], "onnx: %s", e.msg.c_str());
            } catch (const std::exception &e) {
                for (size_t i : g.items)
                    if (!items[i].failed)
                        fail(items[i], "onnx: %s", e.what());
            }
        }
        return KINFER_OK;
    } catch (const std::bad_alloc &) {
        return KINFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        m.host->log(KINFER_LOG_ERROR, "onnx: %s", e.what());
        return KINFER_ERR_MODEL;
    } catch (...) {
        m.host->log(KINFER_LOG_ERROR, "onnx: unknown exception");
        return KINFER_ERR_MODEL;
    }
}

enum kinfer_err onnx_describe(void *model, struct kinfer_model_io *io)
{
    onnx_model *m = static_cast<onnx_model *>(model);
    io->inputs = m->io.data();
    io->n_inputs = m->inputs.size();
    io->outputs = m->io.data() + m->inputs.size();
    io->n_outputs = m->outputs.size();
    return KINFER_OK;
}

const struct kinfer_backend onnx_backend = {
    KINFER_BACKEND_ABI_VERSION,
    "onnx",
    onnx_create,
    onnx_infer,
    onnx_destroy,
    onnx_describe,
};

} // namespace

/* The only exported symbol (the library is built with hidden
 * visibility).  Refuses a host of another ABI by returning NULL. */
const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == nullptr || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return nullptr;
    return &onnx_backend;
}
