/* Fuzz target: the request decoder as the worker calls it, numeric fast
 * path included (kinfer_request_decode on an exact-size buffer).  A
 * success must keep the request contract; a failure must give a UTF-8
 * message that makes a valid error result.  The same input is then
 * decoded again under tight limits and a small error buffer: limits can
 * only turn a success into a failure, never change what a success holds.
 * Last, in the binary tensor form with the input's tail as binary data. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "kinfer/log.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kinfer_log_set_level(-1);
    char *buf = fuzz_copy(data, size);
    struct kinfer_request req;
    char err[512];
    enum kinfer_err rc =
        kinfer_request_decode(buf, size, NULL, &req, err, sizeof err);
    FUZZ_CHECK(rc == KINFER_OK || rc == KINFER_ERR_INVALID ||
                   rc == KINFER_ERR_TOO_LARGE,
               "decode returned %s", kinfer_strerror(rc));
    if (rc == KINFER_OK)
        fuzz_request_check(&req);
    else
        fuzz_request_check_error(&req, err, sizeof err);

    /* The limits come from the input's first and last bytes so that the
     * fuzzer can steer them, without changing what the decoder reads. */
    if (size > 0) {
        unsigned char first = data[0], last = data[size - 1];
        struct kinfer_limits lim = {
            .max_request_bytes = (last & 1) ? size - 1 : size,
            .max_elements = 1 + first % 64,
            .max_inputs = 1 + first % 3,
            .max_depth = 2 + last % 6,
        };
        size_t small = 1 + last % 48;
        char *tiny = malloc(small);
        FUZZ_CHECK(tiny != NULL, "out of memory");
        struct kinfer_request req2;
        enum kinfer_err rc2 =
            kinfer_request_decode(buf, size, &lim, &req2, tiny, small);
        FUZZ_CHECK(rc2 != KINFER_OK || rc == KINFER_OK,
                   "tight limits accept what the defaults refuse");
        if (rc2 == KINFER_OK) {
            fuzz_request_same(&req, &req2, 1, "default vs tight limits");
        } else {
            size_t len = strnlen(tiny, small);
            FUZZ_CHECK(len < small, "small error buffer not terminated");
            FUZZ_CHECK(fuzz_utf8_valid(tiny, len),
                       "truncated error message is not UTF-8");
        }
        kinfer_request_clear(&req2);
        free(tiny);

        /* The binary form: the last byte says how much of the input is
         * binary data after the JSON header.  Same contract; with no
         * binary part it is the plain decode. */
        size_t json_len = size - (size_t)last % (size < 64 ? size : 64);
        struct kinfer_request req3;
        char err3[512];
        enum kinfer_err rc3 = kinfer_request_decode_binary(
            buf, size, json_len, NULL, &req3, err3, sizeof err3);
        FUZZ_CHECK(rc3 == KINFER_OK || rc3 == KINFER_ERR_INVALID ||
                       rc3 == KINFER_ERR_TOO_LARGE,
                   "binary decode returned %s", kinfer_strerror(rc3));
        if (rc3 == KINFER_OK)
            fuzz_request_check(&req3);
        else
            fuzz_request_check_error(&req3, err3, sizeof err3);
        if (json_len == size) {
            FUZZ_CHECK(rc3 == rc, "binary decode of plain JSON differs");
            if (rc3 == KINFER_OK)
                fuzz_request_same(&req, &req3, 1, "plain vs binary decode");
        }
        kinfer_request_clear(&req3);
    }
    kinfer_request_clear(&req);
    free(buf);
    return 0;
}
