/* Fuzz target: decode -> encode -> decode.  Whatever request decodes must
 * encode as a result (a decoded request holds no NaN and only UTF-8), and
 * the result read back as a request ("outputs" renamed "inputs") must give
 * the same names, shapes and elements bit for bit: the encoder promises
 * numbers that read back exactly, FP32 included.  Then the same through
 * the binary tensor form. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "kinfer/log.h"

/* The result with its "outputs" key renamed, in an exact-size buffer.  The
 * encoder writes the key once, at the top level; inside its strings every
 * quote is escaped, so the first raw "outputs": is the key. */
static char *as_request(const char *out, size_t outlen, size_t *len)
{
    static const char key[] = "\"outputs\":";
    const size_t klen = sizeof key - 1;
    for (size_t i = 0; i + klen <= outlen; i++) {
        if (memcmp(out + i, key, klen) != 0)
            continue;
        *len = outlen - 1;
        char *req = malloc(*len);
        FUZZ_CHECK(req != NULL, "out of memory");
        memcpy(req, out, i);
        memcpy(req + i, "\"inputs\":", klen - 1);
        memcpy(req + i + klen - 1, out + i + klen, outlen - i - klen);
        return req;
    }
    fuzz_fail("result without \"outputs\": %.*s", (int)outlen, out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kinfer_log_set_level(-1);
    char *buf = fuzz_copy(data, size);
    struct kinfer_request req;
    if (kinfer_request_decode(buf, size, NULL, &req, NULL, 0) != KINFER_OK) {
        kinfer_request_clear(&req);
        free(buf);
        return 0;
    }

    char *out = NULL;
    size_t outlen = 0;
    enum kinfer_err rc = kinfer_result_encode(
        req.id, req.model_name, "1", req.inputs, req.n_inputs, &out, &outlen);
    FUZZ_CHECK(rc == KINFER_OK, "a decoded request does not encode: %s",
               kinfer_strerror(rc));
    FUZZ_CHECK(out[outlen] == '\0', "result not terminated");

    size_t len;
    char *again = as_request(out, outlen, &len);
    /* Numbers may be written longer than the client wrote them. */
    struct kinfer_limits lim = {.max_request_bytes = len + 1};
    struct kinfer_request back;
    char err[512];
    rc = kinfer_request_decode(again, len, &lim, &back, err, sizeof err);
    FUZZ_CHECK(rc == KINFER_OK, "the result does not decode: %s\n%.*s", err,
               (int)len, again);
    fuzz_request_same(&req, &back, 0, "request vs its result read back");

    kinfer_request_clear(&back);
    free(again);
    free(out);

    /* The same in the binary tensor form: every output's elements as raw
     * bytes after the JSON header, read back as binary inputs. */
    struct kinfer_param all = {
        .name = "binary_data_output", .kind = KINFER_PARAM_BOOL, .boolean = 1};
    struct kinfer_request bin = req;
    bin.params = &all;
    bin.n_params = 1;
    bin.outputs = NULL;
    bin.n_outputs = 0;
    size_t json_len = 0;
    rc = kinfer_result_encode_for(&bin, req.model_name, "1", req.inputs,
                                  req.n_inputs, &out, &outlen, &json_len);
    FUZZ_CHECK(rc == KINFER_OK, "a decoded request does not encode binary: %s",
               kinfer_strerror(rc));
    again = as_request(out, outlen, &len);
    lim.max_request_bytes = len + 1;
    rc = kinfer_request_decode_binary(again, len, json_len - 1, &lim, &back,
                                      err, sizeof err);
    FUZZ_CHECK(rc == KINFER_OK, "the binary result does not decode: %s\n%.*s",
               err, (int)json_len - 1, again);
    fuzz_request_same(&req, &back, 0, "request vs its binary result");
    kinfer_request_clear(&back);
    free(again);
    free(out);
    kinfer_request_clear(&req);
    free(buf);
    return 0;
}
