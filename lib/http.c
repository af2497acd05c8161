/* The worker's HTTP server and probe (http.h): libmicrohttpd answers on its
 * own thread from the metrics registry, the owner's health callbacks and
 * the model registry; the probe is a plain HTTP/1.0 GET over a socket.
 *
 * Threads: libmicrohttpd's one internal thread runs every handler here;
 * it is started with every signal blocked (as lib/shared/thread.c does for
 * kinfer's own threads).  No lock of ours: the registries lock inside. */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <jansson.h>
#include <microhttpd.h>

#include "kinfer/http.h"
#include "kinfer/log.h"
#include "kinfer/options.h"
#include "shared/util.h"

struct kinfer_http {
    struct MHD_Daemon *daemon;
    struct kinfer_http_handlers h;
    int port;
    char address[300];
};

/* ------------------------------------------------------------ answers */

static enum MHD_Result answer(struct MHD_Connection *c, unsigned status,
                              const char *type, char *body, size_t len)
{
    /* body is malloc'd; the response frees it. */
    struct MHD_Response *r =
        MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE);
    if (r == NULL) {
        free(body);
        return MHD_NO;
    }
    MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
    MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
    enum MHD_Result ok = MHD_queue_response(c, status, r);
    MHD_destroy_response(r);
    return ok;
}

static enum MHD_Result answer_json(struct MHD_Connection *c, unsigned status,
                                   json_t *j)
{
    char *text = json_dumps(j, JSON_COMPACT);
    json_decref(j);
    if (text == NULL)
        return MHD_NO;
    size_t len = strlen(text);
    /* Jansson's allocator is malloc: the response may free() it. */
    return answer(c, status, "application/json", text, len);
}

static enum MHD_Result answer_error(struct MHD_Connection *c, unsigned status,
                                    const char *msg)
{
    return answer_json(c, status, json_pack("{s:s}", "error", msg));
}

/* /v2/health/live and /v2/health/ready. */
static enum MHD_Result answer_health(struct MHD_Connection *c, const char *key,
                                     int (*check)(void *, char *, size_t),
                                     void *arg)
{
    char why[256] = "";
    int ok = check == NULL || check(arg, why, sizeof why);
    json_t *j = ok ? json_pack("{s:b}", key, 1)
                   : json_pack("{s:b,s:s}", key, 0, "reason", why);
    return answer_json(c, ok ? MHD_HTTP_OK : MHD_HTTP_SERVICE_UNAVAILABLE, j);
}

static enum MHD_Result answer_metrics(struct kinfer_http *s,
                                      struct MHD_Connection *c)
{
    char *text = NULL;
    size_t len = 0;
    if (s->h.metrics == NULL)
        return answer_error(c, MHD_HTTP_NOT_FOUND, "no metrics");
    if (kinfer_metrics_render(s->h.metrics, &text, &len) != KINFER_OK)
        return answer_error(c, MHD_HTTP_INTERNAL_SERVER_ERROR,
                            "rendering the metrics failed");
    return answer(c, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8",
                  text, len);
}

/* ------------------------------------------------------ model metadata */

/* One "NAME DTYPE [d0,d1]" entry (or "[...]" for any rank) of
 * kinfer_model_describe's text at *p, appended to arr as an OIP tensor
 * metadata object; *p moves past it and its ", " separator.  Returns 0, or
 * -1 when the text does not have that form. */
static int parse_tensor(const char **p, const char *end, json_t *arr)
{
    const char *s = *p;
    const char *sp1 = memchr(s, ' ', (size_t)(end - s));
    if (sp1 == NULL)
        return -1;
    const char *sp2 = memchr(sp1 + 1, ' ', (size_t)(end - sp1 - 1));
    if (sp2 == NULL || sp2 + 1 >= end || sp2[1] != '[')
        return -1;
    const char *close = memchr(sp2, ']', (size_t)(end - sp2));
    if (close == NULL)
        return -1;
    json_t *shape = json_array();
    const char *d = sp2 + 2;
    if (strncmp(d, "...", 3) == 0) {
        json_array_append_new(shape, json_integer(-1));
    } else {
        while (d < close) {
            char *next;
            long long v = strtoll(d, &next, 10);
            if (next == d)
                break;
            json_array_append_new(shape, json_integer(v));
            d = *next == ',' ? next + 1 : next;
        }
    }
    json_array_append_new(arr,
                          json_pack("{s:s%,s:s%,s:o}", "name", s,
                                    (size_t)(sp1 - s), "datatype", sp1 + 1,
                                    (size_t)(sp2 - sp1 - 1), "shape", shape));
    s = close + 1;
    if (end - s >= 2 && s[0] == ',' && s[1] == ' ')
        s += 2;
    *p = s;
    return 0;
}

static void parse_tensors(const char *s, const char *end, json_t *arr)
{
    while (s < end && parse_tensor(&s, end, arr) == 0)
        ;
}

/* The OIP model metadata of m.  The signature comes from
 * kinfer_model_describe's one-line text, the only public view of it. */
static json_t *model_metadata(const struct kinfer_model *m)
{
    char sig[4096];
    kinfer_model_describe(m, sig, sizeof sig);
    json_t *inputs = json_array(), *outputs = json_array();
    const char *arrow = strstr(sig, " -> ");
    if (arrow != NULL) {
        parse_tensors(sig, arrow, inputs);
        parse_tensors(arrow + 4, sig + strlen(sig), outputs);
    }
    return json_pack("{s:s,s:[s],s:s,s:o,s:o}", "name", kinfer_model_name(m),
                     "versions", kinfer_model_version(m), "platform", "kinfer",
                     "inputs", inputs, "outputs", outputs);
}

/* /v2/models/NAME[/versions/V][/ready]: rest is what follows
 * "/v2/models/". */
static enum MHD_Result answer_model(struct kinfer_http *s,
                                    struct MHD_Connection *c, const char *rest)
{
    char name[256], version[64] = "";
    int ready = 0;
    size_t n = strcspn(rest, "/");
    if (n == 0 || n >= sizeof name)
        return answer_error(c, MHD_HTTP_NOT_FOUND, "no such model");
    memcpy(name, rest, n);
    name[n] = '\0';
    const char *tail = rest + n;
    if (strncmp(tail, "/versions/", 10) == 0) {
        size_t k = strcspn(tail + 10, "/");
        if (k == 0 || k >= sizeof version)
            return answer_error(c, MHD_HTTP_NOT_FOUND, "no such version");
        memcpy(version, tail + 10, k);
        version[k] = '\0';
        tail += 10 + k;
    }
    if (strcmp(tail, "/ready") == 0)
        ready = 1;
    else if (tail[0] != '\0')
        return answer_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
    const struct kinfer_model *m =
        s->h.models != NULL ? kinfer_models_find(s->h.models, name) : NULL;
    if (m == NULL || (version[0] && strcmp(version, kinfer_model_version(m))))
        return answer_error(c, MHD_HTTP_NOT_FOUND,
                            m == NULL ? "unknown model" : "unknown version");
    /* A model serves from load until the worker ends. */
    if (ready)
        return answer_json(c, MHD_HTTP_OK,
                           json_pack("{s:s,s:b}", "name", name, "ready", 1));
    return answer_json(c, MHD_HTTP_OK, model_metadata(m));
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *c,
                                  const char *url, const char *method,
                                  const char *version, const char *upload,
                                  size_t *upload_size, void **con_cls)
{
    struct kinfer_http *s = cls;
    (void)version;
    (void)upload;
    (void)con_cls;
    if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 &&
        strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
        return answer_error(c, MHD_HTTP_METHOD_NOT_ALLOWED,
                            "only GET and HEAD");
    if (*upload_size != 0) {
        *upload_size = 0; /* a GET body: ignored */
        return MHD_YES;
    }
    if (strcmp(url, "/metrics") == 0)
        return answer_metrics(s, c);
    if (strcmp(url, "/v2/health/live") == 0)
        return answer_health(c, "live", s->h.live, s->h.arg);
    if (strcmp(url, "/v2/health/ready") == 0)
        return answer_health(c, "ready", s->h.ready, s->h.arg);
    if (strncmp(url, "/v2/models/", 11) == 0)
        return answer_model(s, c, url + 11);
    return answer_error(c, MHD_HTTP_NOT_FOUND, "no such endpoint");
}

__attribute__((format(printf, 2, 0))) static void
mhd_log(void *cls, const char *fmt, va_list ap)
{
    char line[512];
    (void)cls;
    vsnprintf(line, sizeof line, fmt, ap);
    line[strcspn(line, "\n")] = '\0';
    kinfer_log(KINFER_LOG_WARN, "http: %s", line);
}

/* ------------------------------------------------------------- server */

/* A listening socket for host:port, or -1 with err naming addr. */
static int listen_on(const char *addr, const char *host, int port, int *family,
                     char *err, size_t errsize)
{
    char service[8];
    kinfer_fmt(service, sizeof service, "%d", port);
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
    int rc = getaddrinfo(host, service, &hints, &res);
    if (rc != 0) {
        kinfer_fmt(err, errsize, "--http %s: cannot resolve %s: %s", addr, host,
                   gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd < 0) {
            saved = errno;
            continue;
        }
        int one = 1;
        setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
        if (bind(fd, ai->ai_addr, ai->ai_addrlen) != 0 || listen(fd, 64) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
            continue;
        }
        *family = ai->ai_family;
    }
    freeaddrinfo(res);
    if (fd < 0)
        kinfer_fmt(err, errsize, "--http %s: cannot listen: %s", addr,
                   strerror(saved));
    return fd;
}

static int bound_port(int fd)
{
    struct sockaddr_storage ss;
    socklen_t len = sizeof ss;
    if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
        return -1;
    char service[16];
    if (getnameinfo((struct sockaddr *)&ss, len, NULL, 0, service,
                    sizeof service, NI_NUMERICSERV) != 0)
        return -1;
    return (int)strtol(service, NULL, 10);
}

enum kinfer_err kinfer_http_start(const char *addr,
                                  const struct kinfer_http_handlers *h,
                                  struct kinfer_http **out, char *err,
                                  size_t errsize)
{
    char host[256];
    int port = 0, family = AF_INET;
    if (kinfer_addr_split(addr, host, sizeof host, &port) != 0) {
        kinfer_fmt(err, errsize, "--http %s: expected HOST:PORT", addr);
        return KINFER_ERR_CONFIG;
    }
    int fd = listen_on(addr, host, port, &family, err, errsize);
    if (fd < 0)
        return KINFER_ERR_CONFIG;
    struct kinfer_http *s = kinfer_xcalloc(1, sizeof *s);
    s->h = *h;
    s->port = bound_port(fd);
    kinfer_fmt(s->address, sizeof s->address, "%s%s%s:%d",
               family == AF_INET6 ? "[" : "", host,
               family == AF_INET6 ? "]" : "", s->port);

    /* The server's thread inherits this mask: signals stay with main. */
    sigset_t all, old;
    sigfillset(&all);
    pthread_sigmask(SIG_SETMASK, &all, &old);
    unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_ERROR_LOG |
                     (family == AF_INET6 ? MHD_USE_IPv6 : 0);
    /* The logger first, so every message of the daemon goes through it. */
    s->daemon = MHD_start_daemon(
        flags, 0, NULL, NULL, on_request, s, MHD_OPTION_EXTERNAL_LOGGER,
        mhd_log, NULL, MHD_OPTION_LISTEN_SOCKET, fd,
        MHD_OPTION_CONNECTION_LIMIT, (unsigned)64,
        MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)10, MHD_OPTION_END);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    if (s->daemon == NULL) {
        close(fd);
        free(s);
        kinfer_fmt(err, errsize, "--http %s: starting the HTTP server failed",
                   addr);
        return KINFER_ERR_CONFIG;
    }
    *out = s;
    return KINFER_OK;
}

const char *kinfer_http_address(const struct kinfer_http *s)
{
    return s->address;
}

int kinfer_http_port(const struct kinfer_http *s)
{
    return s->port;
}

void kinfer_http_stop(struct kinfer_http *s)
{
    if (s == NULL)
        return;
    /* MHD_stop_daemon closes the listening socket it was given. */
    MHD_stop_daemon(s->daemon);
    free(s);
}

/* -------------------------------------------------------------- probe */

/* Split "http://HOST[:PORT]/PATH" into its parts.  0 or -1. */
static int split_url(const char *url, char *host, size_t hostsize, char *port,
                     size_t portsize, const char **path)
{
    if (strncmp(url, "http://", 7) != 0)
        return -1;
    const char *h = url + 7;
    size_t hl = strcspn(h, "/");
    const char *slash = h + hl;
    *path = *slash == '/' ? slash : "/";
    char hostport[300];
    if (hl == 0 || hl >= sizeof hostport)
        return -1;
    memcpy(hostport, h, hl);
    hostport[hl] = '\0';
    int p = 80;
    if (strchr(hostport, ':') == NULL ||
        (hostport[0] == '[' && hostport[hl - 1] == ']')) {
        size_t off = hostport[0] == '[' ? 1 : 0;
        if (hl - 2 * off == 0 || hl - 2 * off >= hostsize)
            return -1;
        memcpy(host, hostport + off, hl - 2 * off);
        host[hl - 2 * off] = '\0';
    } else if (kinfer_addr_split(hostport, host, hostsize, &p) != 0) {
        return -1;
    }
    kinfer_fmt(port, portsize, "%d", p);
    return 0;
}

static int64_t left_ms(int64_t deadline)
{
    int64_t left = deadline - kinfer_now_ms();
    return left > 0 ? left : 0;
}

/* Connect fd to ai before deadline.  0 or -1 (errno set). */
static int connect_by(int fd, const struct addrinfo *ai, int64_t deadline)
{
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    if (connect(fd, ai->ai_addr, ai->ai_addrlen) == 0)
        return 0;
    if (errno != EINPROGRESS)
        return -1;
    struct pollfd pf = {.fd = fd, .events = POLLOUT};
    int n = poll(&pf, 1, (int)left_ms(deadline));
    if (n <= 0) {
        errno = n == 0 ? ETIMEDOUT : errno;
        return -1;
    }
    int soerr = 0;
    socklen_t len = sizeof soerr;
    getsockopt(fd, SOL_SOCKET, SO_ERROR, &soerr, &len);
    if (soerr != 0) {
        errno = soerr;
        return -1;
    }
    return 0;
}

/* Send req and read the answer's status line into line before deadline.
 * 0 or -1 with why set. */
static int exchange(int fd, const char *req, int64_t deadline, char *line,
                    size_t linesize, char *why, size_t whysize)
{
    size_t sent = 0, len = strlen(req), got = 0;
    while (sent < len) {
        struct pollfd pf = {.fd = fd, .events = POLLOUT};
        if (poll(&pf, 1, (int)left_ms(deadline)) <= 0)
            goto timeout;
        ssize_t k = send(fd, req + sent, len - sent, MSG_NOSIGNAL);
        if (k < 0 && errno != EAGAIN && errno != EINTR) {
            kinfer_fmt(why, whysize, "sending the request: %s",
                       strerror(errno));
            return -1;
        }
        sent += k > 0 ? (size_t)k : 0;
    }
    while (got + 1 < linesize && memchr(line, '\n', got) == NULL) {
        struct pollfd pf = {.fd = fd, .events = POLLIN};
        if (poll(&pf, 1, (int)left_ms(deadline)) <= 0)
            goto timeout;
        ssize_t k = recv(fd, line + got, linesize - 1 - got, 0);
        if (k == 0)
            break;
        if (k < 0 && errno != EAGAIN && errno != EINTR) {
            kinfer_fmt(why, whysize, "reading the answer: %s", strerror(errno));
            return -1;
        }
        got += k > 0 ? (size_t)k : 0;
    }
    line[got] = '\0';
    line[strcspn(line, "\r\n")] = '\0';
    return 0;
timeout:
    kinfer_fmt(why, whysize, "no answer within the deadline");
    return -1;
}

int kinfer_http_probe(const char *url, int timeout_ms, char *why,
                      size_t whysize)
{
    char host[256], port[8];
    const char *path;
    if (split_url(url, host, sizeof host, port, sizeof port, &path) != 0) {
        kinfer_fmt(why, whysize,
                   "%s: expected http://HOST[:PORT]/PATH (plain HTTP)", url);
        return -1;
    }
    int64_t deadline = kinfer_now_ms() + timeout_ms;
    struct addrinfo hints = {0}, *res = NULL;
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    hints.ai_flags = AI_NUMERICSERV;
    int rc = getaddrinfo(host, port, &hints, &res);
    if (rc != 0) {
        kinfer_fmt(why, whysize, "%s: cannot resolve %s: %s", url, host,
                   gai_strerror(rc));
        return -1;
    }
    int fd = -1, saved = 0;
    for (struct addrinfo *ai = res; ai != NULL && fd < 0; ai = ai->ai_next) {
        fd = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC,
                    ai->ai_protocol);
        if (fd >= 0 && connect_by(fd, ai, deadline) != 0) {
            saved = errno;
            close(fd);
            fd = -1;
        }
    }
    freeaddrinfo(res);
    if (fd < 0) {
        kinfer_fmt(why, whysize, "%s: cannot connect: %s", url,
                   strerror(saved));
        return -1;
    }
    char req[1024], line[256], msg[200];
    kinfer_fmt(req, sizeof req,
               "GET %s HTTP/1.0\r\nHost: %s:%s\r\nUser-Agent: kinfer-probe"
               "\r\n\r\n",
               path, host, port);
    rc = exchange(fd, req, deadline, line, sizeof line, msg, sizeof msg);
    close(fd);
    if (rc != 0) {
        kinfer_fmt(why, whysize, "%s: %s", url, msg);
        return -1;
    }
    int status = 0;
    if (sscanf(line, "HTTP/%*d.%*d %3d", &status) != 1 || status < 100 ||
        status > 599) {
        kinfer_fmt(why, whysize, "%s: not an HTTP answer: '%.80s'", url, line);
        return -1;
    }
    kinfer_fmt(why, whysize, "%s: %s", url, line);
    return status;
}
