/* The worker's small HTTP server (libmicrohttpd, on threads of its own):
 * GET /metrics (Prometheus text), /v2/health/live, /v2/health/ready,
 * /v2/models/<name>[/versions/<v>] and .../ready in the Open Inference
 * Protocol's shapes.  It never touches the consumer: it renders the
 * metrics registry and asks the owner's health callbacks.  Also the
 * client side of the container health check (kinfer_http_probe).  The
 * endpoints are listed in docs/metrics.md.
 *
 * Threads: start and stop from the main thread; the callbacks run on the
 * server's thread, which blocks every signal. */
#ifndef KINFER_HTTP_H
#define KINFER_HTTP_H

#include <stddef.h>

#include "kinfer/error.h"
#include "kinfer/metrics.h"
#include "kinfer/model.h"

/* What the server serves.  Everything is borrowed and must outlive the
 * server (kinfer_http_stop). */
struct kinfer_http_handlers {
    struct kinfer_metrics *metrics;     /* /metrics; NULL: 404 */
    const struct kinfer_models *models; /* /v2/models; NULL: none */
    /* Return 1 when live / ready; else 0 with a short reason in why
     * (answered as 503 with {"live"|"ready": false, "reason": why}).
     * NULL: always 1. */
    int (*live)(void *arg, char *why, size_t size);
    int (*ready)(void *arg, char *why, size_t size);
    void *arg;
};

struct kinfer_http;

/* Listen on addr ("HOST:PORT" or "[IPV6]:PORT" as kinfer_addr_split reads
 * it; port 0 picks a free port) and serve h on a thread of the server's.
 * On KINFER_OK *out is the running server; on KINFER_ERR_CONFIG err names
 * addr and the cause (cannot resolve, cannot bind: address in use, ...). */
enum kinfer_err
kinfer_http_start(const char *addr, const struct kinfer_http_handlers *h,
                  struct kinfer_http **out, char *err, size_t errsize)
    __attribute__((warn_unused_result));

/* The bound address as "HOST:PORT" with the real port (borrowed from s),
 * and the port alone. */
const char *kinfer_http_address(const struct kinfer_http *s);
int kinfer_http_port(const struct kinfer_http *s);

/* Stop serving (in-flight answers finish) and free.  NULL is a no-op. */
void kinfer_http_stop(struct kinfer_http *s);

/* GET url ("http://HOST[:PORT]/PATH"; plain HTTP only) with HTTP/1.0 over
 * a socket, everything within timeout_ms.  Returns the status code (100
 * to 599) and writes the status line to why; -1 when no answer came, with
 * why saying why (bad URL, cannot connect, timed out). */
int kinfer_http_probe(const char *url, int timeout_ms, char *why,
                      size_t whysize);

#endif
