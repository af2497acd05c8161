/* kinfer backend "fasttext": text classification with a supervised
 * fastText model (.bin, or quantized .ftz) through Debian's libfasttext.
 * Built as the plugin kinfer_fasttext.so and loaded with --plugin.
 *
 * config.json (besides kinfer's own fields, see repo.h):
 *   "model"      the model file, relative to the model directory (required)
 *   "k"          labels per text, 1 .. the model's label count; default 1
 *   "threshold"  drop labels whose probability is below it, 0 .. 1;
 *                default 0
 * Request: one BYTES input (any name) of shape [n] or [n, 1], each element
 * a UTF-8 text; parameters "k" (integer) and "threshold" (number) override
 * the config for that request.
 * Result: "labels" BYTES [n, k] (fastText's labels without their
 * "__label__" prefix, best first) and "probabilities" FP32 [n, k].  When
 * fewer than k labels pass the threshold the row is padded with "" and 0,
 * so the shape never depends on the data.  Probabilities are fastText's as
 * `fasttext predict-prob` prints them (softmax plus fastText's 1e-5
 * smoothing, so a sure label may read 1.00001).
 *
 * A text is classified as one line: newlines inside it become spaces and
 * the end-of-line token fastText saw after every training line is added,
 * exactly as the CLI does for each input line.
 *
 * Threads: no lock.  In fastText 0.9.2, FastText::predictLine is const,
 * keeps its scratch vectors in a Model::State local to the call, and the
 * dictionary, matrices and loss it reads have no mutable members; training
 * is the only code that writes a loaded model.
 *
 * C++ exceptions never cross the C ABI: create and infer catch everything
 * and report it as a model error or an item error.
 */
#include <cstdarg>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <memory>
#include <new>
#include <sstream>
#include <string>
#include <utility>
#include <vector>

#include <fasttext/fasttext.h>
#include <jansson.h>

#include "kinfer/backend.h"
#include "kinfer/log.h"

extern "C" __attribute__((visibility("default"))) const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host);

namespace
{

struct ft_model {
    const struct kinfer_host *host = nullptr;
    fasttext::FastText ft;
    std::string label_prefix; /* "__label__" unless trained otherwise */
    int32_t nlabels = 0;
    int64_t k = 1;
    double threshold = 0.0;
    struct kinfer_tensor_desc io[3] = {}; /* text; labels, probabilities */
};

__attribute__((format(printf, 3, 4))) void say(char *buf, size_t size,
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

/* Settings from config.json, before the model file is known. */
struct ft_config {
    std::string model;
    bool has_k = false;
    int64_t k = 1;
    double threshold = 0.0;
};

bool parse_config(const char *text, ft_config &c, char *err, size_t errsize)
{
    json_error_t jerr;
    json_t *root = json_loads(text ? text : "{}", 0, &jerr);
    if (root == nullptr) {
        say(err, errsize, "config: invalid JSON at line %d: %s", jerr.line,
            jerr.text);
        return false;
    }
    bool ok = false;
    const json_t *model = json_object_get(root, "model");
    const json_t *k = json_object_get(root, "k");
    const json_t *thr = json_object_get(root, "threshold");
    if (model == nullptr || !json_is_string(model) ||
        json_string_length(model) == 0) {
        say(err, errsize,
            "model: expected the model file's name (relative to the model "
            "directory)");
    } else if (thr != nullptr &&
               (!json_is_number(thr) || json_number_value(thr) < 0.0 ||
                json_number_value(thr) > 1.0)) {
        say(err, errsize, "threshold: expected a number from 0 to 1");
    } else {
        c.model = json_string_value(model);
        /* k's range depends on the model: checked once it is loaded (a
         * non-integer becomes 0, out of every range). */
        c.has_k = k != nullptr;
        c.k = k == nullptr ? 1 : json_is_integer(k) ? json_integer_value(k) : 0;
        c.threshold = thr ? json_number_value(thr) : 0.0;
        ok = true;
    }
    json_decref(root);
    return ok;
}

enum kinfer_err ft_create(const struct kinfer_host *host, const char *dir,
                          const char *config_json, void **out, char *err,
                          size_t errsize)
{
    try {
        ft_config c;
        if (!parse_config(config_json, c, err, errsize))
            return KINFER_ERR_CONFIG;
        std::string path = c.model;
        if (path[0] != '/' && dir != nullptr)
            path = std::string(dir) + "/" + path;

        std::unique_ptr<ft_model> m(new ft_model);
        m->host = host;
        try {
            m->ft.loadModel(path);
        } catch (const std::bad_alloc &) {
            throw;
        } catch (const std::exception &e) {
            /* fastText's messages name the file ("... has wrong file
             * format!"). */
            say(err, errsize, "model: %s", e.what());
            return KINFER_ERR_MODEL;
        }
        const fasttext::Args args = m->ft.getArgs();
        if (args.model != fasttext::model_name::sup) {
            say(err, errsize,
                "model: %s is a word-vector model, not a classifier",
                path.c_str());
            return KINFER_ERR_MODEL;
        }
        m->nlabels = m->ft.getDictionary()->nlabels();
        if (m->nlabels < 1) {
            say(err, errsize, "model: %s has no labels", path.c_str());
            return KINFER_ERR_MODEL;
        }
        if (c.has_k && (c.k < 1 || c.k > m->nlabels)) {
            say(err, errsize,
                "k: expected an integer from 1 to %d (the model's labels)",
                (int)m->nlabels);
            return KINFER_ERR_CONFIG;
        }
        m->label_prefix = args.label;
        m->k = c.k;
        m->threshold = c.threshold;
        host->log(KINFER_LOG_INFO,
                  "fasttext: %s: %d labels, %d words, dim %d%s", path.c_str(),
                  (int)m->nlabels, (int)m->ft.getDictionary()->nwords(),
                  m->ft.getDimension(), m->ft.isQuant() ? ", quantized" : "");
        *out = m.release();
        return KINFER_OK;
    } catch (const std::bad_alloc &) {
        say(err, errsize, "out of memory");
        return KINFER_ERR_NOMEM;
    } catch (const std::exception &e) {
        say(err, errsize, "fastText: %s", e.what());
        return KINFER_ERR_MODEL;
    } catch (...) {
        say(err, errsize, "fastText: unknown exception");
        return KINFER_ERR_MODEL;
    }
}

void ft_destroy(void *model)
{
    delete static_cast<ft_model *>(model);
}

const struct kinfer_param *find_param(const struct kinfer_request *req,
                                      const char *name)
{
    for (size_t i = 0; i < req->n_params; i++)
        if (std::strcmp(req->params[i].name, name) == 0)
            return &req->params[i];
    return nullptr;
}

/* The item's k and threshold: the config's, overridden by parameters. */
bool item_settings(const ft_model &m, struct kinfer_infer_item &it, int32_t &k,
                   float &threshold)
{
    k = (int32_t)m.k;
    threshold = (float)m.threshold;
    const struct kinfer_param *pk = find_param(it.request, "k");
    if (pk != nullptr) {
        if (pk->kind != KINFER_PARAM_NUMBER || !pk->is_integer ||
            pk->integer < 1 || pk->integer > m.nlabels) {
            say(it.error, sizeof it.error,
                "parameter k: expected an integer from 1 to %d (the "
                "model's labels)",
                (int)m.nlabels);
            return false;
        }
        k = (int32_t)pk->integer;
    }
    const struct kinfer_param *pt = find_param(it.request, "threshold");
    if (pt != nullptr) {
        if (pt->kind != KINFER_PARAM_NUMBER || !(pt->number >= 0.0) ||
            pt->number > 1.0) {
            say(it.error, sizeof it.error,
                "parameter threshold: expected a number from 0 to 1");
            return false;
        }
        threshold = (float)pt->number;
    }
    return true;
}

/* The item's input of texts, or NULL with the item's error set. */
const struct kinfer_tensor *item_input(struct kinfer_infer_item &it)
{
    const struct kinfer_request *req = it.request;
    if (req->n_inputs != 1) {
        say(it.error, sizeof it.error,
            "expected one BYTES input of shape [n] or [n, 1], got %zu "
            "inputs",
            req->n_inputs);
        return nullptr;
    }
    const struct kinfer_tensor *in = &req->inputs[0];
    if (in->dtype != KINFER_DTYPE_BYTES) {
        say(it.error, sizeof it.error,
            "input '%s': expected datatype BYTES (UTF-8 texts)", in->name);
        return nullptr;
    }
    if (!(in->ndim == 1 || (in->ndim == 2 && in->shape[1] == 1))) {
        say(it.error, sizeof it.error,
            "input '%s': expected shape [n] or [n, 1]", in->name);
        return nullptr;
    }
    return in;
}

/* Attach labels/probabilities built from preds ([n] rows of at most k). */
bool item_outputs(
    const ft_model &m, struct kinfer_infer_item &it, int32_t k,
    const std::vector<std::vector<std::pair<fasttext::real, std::string>>>
        &preds)
{
    const struct kinfer_host *h = m.host;
    const int64_t shape[2] = {(int64_t)preds.size(), k};
    /* Once attached, kinfer frees the outputs whatever happens next, so a
     * half-built result cannot leak. */
    it.outputs = static_cast<struct kinfer_tensor *>(
        h->alloc(2 * sizeof(struct kinfer_tensor)));
    if (it.outputs == nullptr)
        return false;
    it.n_outputs = 2;
    struct kinfer_tensor *labels = &it.outputs[0];
    struct kinfer_tensor *probs = &it.outputs[1];
    if (h->tensor_init(labels, "labels", KINFER_DTYPE_BYTES, 2, shape) !=
            KINFER_OK ||
        h->tensor_init(probs, "probabilities", KINFER_DTYPE_FP32, 2, shape) !=
            KINFER_OK)
        return false;
    float *p = static_cast<float *>(probs->data);
    const std::string &prefix = m.label_prefix;
    for (size_t i = 0; i < preds.size(); i++) {
        for (size_t j = 0; j < (size_t)k; j++) {
            size_t at = i * (size_t)k + j;
            if (j >= preds[i].size())
                continue; /* padding: "" and 0 from tensor_init */
            const std::string &label = preds[i][j].second;
            size_t skip = label.compare(0, prefix.size(), prefix) == 0
                              ? prefix.size()
                              : 0;
            if (h->tensor_set_bytes(labels, at, label.data() + skip,
                                    label.size() - skip) != KINFER_OK)
                return false;
            p[at] = preds[i][j].first;
        }
    }
    return true;
}

void infer_item(const ft_model &m, struct kinfer_infer_item &it)
{
    int32_t k;
    float threshold;
    const struct kinfer_tensor *in = item_input(it);
    if (in == nullptr || !item_settings(m, it, k, threshold)) {
        it.failed = 1;
        return;
    }
    const struct kinfer_bytes *texts =
        static_cast<const struct kinfer_bytes *>(in->data);
    std::vector<std::vector<std::pair<fasttext::real, std::string>>> preds(
        in->count);
    std::string line;
    for (size_t i = 0; i < in->count; i++) {
        line.assign(texts[i].data ? texts[i].data : "", texts[i].len);
        for (char &c : line)
            if (c == '\n')
                c = ' ';
        line += '\n';
        std::istringstream is(line);
        m.ft.predictLine(is, preds[i], k, threshold);
    }
    if (!item_outputs(m, it, k, preds)) {
        it.failed = 1;
        say(it.error, sizeof it.error, "out of memory");
    }
}

enum kinfer_err ft_infer(void *model, struct kinfer_infer_item *items, size_t n)
{
    const ft_model &m = *static_cast<const ft_model *>(model);
    for (size_t i = 0; i < n; i++) {
        struct kinfer_infer_item &it = items[i];
        try {
            infer_item(m, it);
        } catch (const std::bad_alloc &) {
            it.failed = 1;
            say(it.error, sizeof it.error, "out of memory");
        } catch (const std::exception &e) {
            it.failed = 1;
            say(it.error, sizeof it.error, "fastText: %s", e.what());
        } catch (...) {
            it.failed = 1;
            say(it.error, sizeof it.error, "fastText: unknown exception");
        }
    }
    return KINFER_OK;
}

/* One BYTES input of any name (texts), two [n, k] outputs; k here is the
 * configured default (a request's parameters.k may change it). */
enum kinfer_err ft_describe(void *model, struct kinfer_model_io *io)
{
    ft_model *m = static_cast<ft_model *>(model);
    m->io[0].name = "text";
    m->io[0].dtype = KINFER_DTYPE_BYTES;
    m->io[0].ndim = 1;
    m->io[0].shape[0] = -1;
    m->io[1].name = "labels";
    m->io[1].dtype = KINFER_DTYPE_BYTES;
    m->io[1].ndim = 2;
    m->io[1].shape[0] = -1;
    m->io[1].shape[1] = m->k;
    m->io[2] = m->io[1];
    m->io[2].name = "probabilities";
    m->io[2].dtype = KINFER_DTYPE_FP32;
    io->inputs = &m->io[0];
    io->n_inputs = 1;
    io->outputs = &m->io[1];
    io->n_outputs = 2;
    return KINFER_OK;
}

const struct kinfer_backend fasttext_backend = {
    KINFER_BACKEND_ABI_VERSION,
    "fasttext",
    ft_create,
    ft_infer,
    ft_destroy,
    ft_describe,
};

} // namespace

/* The only exported symbol (the library is built with hidden
 * visibility).  Refuses a host of another ABI by returning NULL. */
const struct kinfer_backend *
kinfer_backend_entry(const struct kinfer_host *host)
{
    if (host == nullptr || host->abi_version != KINFER_BACKEND_ABI_VERSION)
        return nullptr;
    return &fasttext_backend;
}
