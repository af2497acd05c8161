/* Fuzz target: the request decoder's ordinary (Jansson) path, and the
 * fast path checked against it.  The numeric fast path lifts only arrays
 * under a key written as the raw bytes "data"; spelling every such key
 * "d\u0061ta" means the same JSON but is never lifted.  Each input is
 * decoded as given and so rewritten (both from exact-size buffers): the
 * outcome, and on success every element bit for bit, must agree. */
#include <stdlib.h>
#include <string.h>

#include "fuzz.h"
#include "fuzz_request.h"
#include "kinfer/log.h"

static const char raw_key[] = "\"data\"";
static const char escaped_key[] = "\"d\\u0061ta\"";

/* data[0..size) with every "data" (quotes included) spelled "d\u0061ta",
 * in an exact-size buffer of *outlen bytes; NULL when there is none.  In
 * valid JSON those six bytes are always a string token (no other token
 * holds a 'd'), so the rewrite keeps the meaning, and invalid JSON stays
 * invalid. */
static char *escape_data_keys(const uint8_t *data, size_t size, size_t *outlen)
{
    const size_t rlen = sizeof raw_key - 1, elen = sizeof escaped_key - 1;
    size_t hits = 0;
    for (size_t i = 0; i + rlen <= size; i++)
        if (memcmp(data + i, raw_key, rlen) == 0)
            hits++, i += rlen - 1;
    if (hits == 0)
        return NULL;
    *outlen = size + hits * (elen - rlen);
    char *out = malloc(*outlen);
    FUZZ_CHECK(out != NULL, "out of memory");
    size_t o = 0;
    for (size_t i = 0; i < size;) {
        if (i + rlen <= size && memcmp(data + i, raw_key, rlen) == 0) {
            memcpy(out + o, escaped_key, elen);
            o += elen;
            i += rlen;
        } else {
            out[o++] = (char)data[i++];
        }
    }
    return out;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    kinfer_log_set_level(-1);
    size_t slow_len = size;
    char *slow = escape_data_keys(data, size, &slow_len);
    if (slow == NULL)
        slow = fuzz_copy(data, size); /* nothing to lift: Jansson only */

    /* The rewrite makes the text longer: keep the size cap out of it. */
    struct kinfer_limits lim = {.max_request_bytes = 2 * slow_len + 16};
    struct kinfer_request ordinary;
    char err[512];
    enum kinfer_err rc =
        kinfer_request_decode(slow, slow_len, &lim, &ordinary, err, sizeof err);
    if (rc == KINFER_OK)
        fuzz_request_check(&ordinary);
    else
        fuzz_request_check_error(&ordinary, err, sizeof err);

    if (slow_len != size) {
        char *buf = fuzz_copy(data, size);
        struct kinfer_request fast;
        char err2[512];
        enum kinfer_err rc2 =
            kinfer_request_decode(buf, size, &lim, &fast, err2, sizeof err2);
        /* The one designed difference: a UINT64 element above INT64_MAX
         * is read by the fast path alone (Jansson: "too big integer"). */
        int big_uint = 0;
        for (size_t i = 0; rc2 == KINFER_OK && i < fast.n_inputs; i++)
            big_uint |= fast.inputs[i].dtype == KINFER_DTYPE_UINT64;
        if (rc == KINFER_ERR_INVALID && big_uint &&
            strstr(err, "too big integer") != NULL) {
            kinfer_request_clear(&fast);
            free(buf);
            kinfer_request_clear(&ordinary);
            free(slow);
            return 0;
        }
        FUZZ_CHECK(rc == rc2, "ordinary path says %s, as given says %s (%s)",
                   kinfer_strerror(rc), kinfer_strerror(rc2),
                   rc != KINFER_OK ? err : err2);
        if (rc == KINFER_OK) {
            fuzz_request_same(&ordinary, &fast, 1,
                              "escaped vs raw \"data\" keys");
        } else {
            /* Both went the ordinary way and read the same id and model
             * name; messages differ only in JSON positions. */
            FUZZ_CHECK(fuzz_same_cstr(ordinary.id, fast.id) &&
                           fuzz_same_cstr(ordinary.model_name, fast.model_name),
                       "failed decodes kept different names");
        }
        kinfer_request_clear(&fast);
        free(buf);
    }
    kinfer_request_clear(&ordinary);
    free(slow);
    return 0;
}
