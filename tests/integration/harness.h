/* Test support for kinfer's integration tests against a real Kafka broker:
 * unique names, topic creation, producing, reading topics back, offsets,
 * and spawning, signalling and reaping kinfer-worker processes.  Talks to
 * Kafka with librdkafka directly, so it does not share code with what it
 * tests.  Single-threaded: every function runs on the test's main thread.
 */
#ifndef KINFER_IT_HARNESS_H
#define KINFER_IT_HARNESS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include <librdkafka/rdkafka.h>

struct it_ctx;
struct it_proc;
struct it_reader;

/* Where a produced message landed, filled in by its delivery report.
 * err stays -1 until the report arrives. */
struct it_delivery {
    int err; /* rd_kafka_resp_err_t, or -1 when not yet delivered */
    int32_t partition;
    int64_t offset;
};

/* One message read back from a topic.  key and value are NULL for a null
 * key/value; otherwise they are copies with a NUL one past the end. */
struct it_msg {
    int32_t partition;
    int64_t offset;
    char *key;
    size_t key_len;
    char *value;
    size_t len;
    rd_kafka_headers_t *headers; /* NULL when the message had none */
};

/* Build the context from the test's command line:
 *   --worker PATH --produce PATH --bootstrap-file PATH --log-dir DIR
 * The broker list comes from $KINFER_TEST_BROKERS when set, else from the
 * bootstrap file (written by "ops/kafka.sh start").  Waits (bounded) until
 * the broker answers a metadata request.  name is the test's name, used
 * in topic names and log file names.  Returns NULL after printing why. */
struct it_ctx *it_ctx_new(const char *name, int argc, char **argv);

/* SIGKILL and reap every process still running, then free.  NULL no-op. */
void it_ctx_free(struct it_ctx *ctx);

/* SIGKILL and reap every process of ctx still running. */
void it_ctx_kill_all(struct it_ctx *ctx);

/* A cmocka teardown (state is the it_ctx): it_ctx_kill_all, so a failed
 * test does not leave workers running into the next one. */
int it_teardown(void **state);

struct CMUnitTest;

/* The main of every integration test: builds the context from argv, runs
 * tests[0..n) as cmocka group name with the context as each test's state
 * (and it_teardown after each), frees the context.  Returns what main
 * returns. */
int it_main(const char *name, int argc, char **argv, struct CMUnitTest *tests,
            size_t n);

/* Fresh names for one worker's topics and group. */
struct it_topics {
    char in[256], out[256], dlq[256], group[256];
};

/* Pick unique names into t and create the request topic (in_parts
 * partitions, configs in_config as for it_topic_create), the result topic
 * (out_parts) and the DLQ (1 partition, dlq_config).  Fails the test when
 * a topic cannot be created. */
void it_topics_make(struct it_ctx *ctx, struct it_topics *t, int in_parts,
                    int out_parts, const char *const *in_config,
                    const char *const *dlq_config);

/* Borrowed from ctx. */
const char *it_ctx_brokers(const struct it_ctx *ctx);
const char *it_ctx_worker_path(const struct it_ctx *ctx);
const char *it_ctx_produce_path(const struct it_ctx *ctx);

/* Print "FAIL <file>:<line>: <message>" and the log tail of every process
 * this context started, to stderr.  Tests call it through IT_REQUIRE. */
void it_report_failure(struct it_ctx *ctx, const char *file, int line,
                       const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Check cond; on failure report (with worker log tails) and fail the
 * cmocka test.  The including file must include <cmocka.h>. */
#define IT_REQUIRE(ctx, cond, ...)                                             \
    do {                                                                       \
        if (!(cond)) {                                                         \
            it_report_failure((ctx), __FILE__, __LINE__, __VA_ARGS__);         \
            fail();                                                            \
        }                                                                      \
    } while (0)

/* Milliseconds on the monotonic clock. */
int64_t it_now_ms(void);

/* Write "kinfer-it-<test>-<what>-<pid>-<n>" to buf: unique per process
 * and call, so no two tests or runs share a topic or group. */
void it_unique_name(struct it_ctx *ctx, const char *what, char *buf,
                    size_t size);

/* Create topic with partitions partitions (replication 1) and the given
 * NULL-terminated name, value, name, value, ... configs (may be NULL),
 * then wait until metadata shows a leader for every partition.  Returns
 * 0, or -1 after printing why. */
int it_topic_create(struct it_ctx *ctx, const char *topic, int partitions,
                    const char *const *configs);

/* Number of partitions of topic per metadata, or -1 after printing why. */
int it_topic_partitions(struct it_ctx *ctx, const char *topic);

/* Queue one message on the context's producer.  partition is
 * RD_KAFKA_PARTITION_UA to partition by key.  key and value may be NULL.
 * headers (may be NULL) move to the producer on success and stay the
 * caller's on failure.  dr, when not NULL, is filled by the delivery
 * report and must stay valid until it_produce_flush returns.  Retries
 * while the local queue is full.  Returns 0, or -1 after printing why. */
int it_produce(struct it_ctx *ctx, const char *topic, int32_t partition,
               const void *key, size_t key_len, const void *value, size_t len,
               rd_kafka_headers_t *headers, struct it_delivery *dr);

/* Wait until every queued message is delivered.  Returns the number of
 * messages whose delivery failed since the last flush (0 is success), or
 * -1 when the flush timed out. */
int it_produce_flush(struct it_ctx *ctx, int timeout_ms);

/* Called for each message a reader consumes, in order of arrival; m and
 * its fields are borrowed and stay valid until it_reader_free. */
typedef void it_msg_fn(const struct it_msg *m, void *arg);

/* True when the condition a test waits for holds. */
typedef int it_done_fn(void *arg);

/* A consumer that reads every partition of topic from the beginning
 * (assign, no group membership, no commits) and keeps every message.
 * on_msg may be NULL.  Returns NULL after printing why. */
struct it_reader *it_reader_new(struct it_ctx *ctx, const char *topic,
                                it_msg_fn *on_msg, void *arg);
/* As it_reader_new (which reads read_committed, librdkafka's default),
 * with isolation.level isolation: "read_uncommitted" also sees the
 * messages of aborted and still open transactions. */
struct it_reader *it_reader_new_isolation(struct it_ctx *ctx, const char *topic,
                                          it_msg_fn *on_msg, void *arg,
                                          const char *isolation);
void it_reader_free(struct it_reader *r);

/* Consume until done(done_arg) holds (checked before the first poll and
 * after every message) or timeout_ms passes.  Also fails early when a
 * process the context started exits without having been signalled by
 * the test.  Returns 0 when done, or -1 after printing what was awaited
 * (what) and why it stopped; the caller's IT_REQUIRE adds the log tails. */
int it_reader_wait(struct it_reader *r, it_done_fn *done, void *done_arg,
                   int64_t timeout_ms, const char *what);

/* Consume for up to timeout_ms without a condition; returns how many new
 * messages arrived.  For "nothing more arrives" checks. */
size_t it_reader_drain(struct it_reader *r, int timeout_ms);

/* Consume until every partition has been read up to the end offset it
 * had when called (so everything produced before the call is in).
 * Returns 0, or -1 after printing which partition lags. */
int it_reader_catch_up(struct it_reader *r, int64_t timeout_ms);

size_t it_reader_count(const struct it_reader *r);
/* Message i (0 .. count-1), in arrival order.  Borrowed from r. */
const struct it_msg *it_reader_msg(const struct it_reader *r, size_t i);

/* Value of the last header called name as a NUL-terminated copy in buf
 * (truncated to size-1); returns its length, or -1 when absent. */
long it_header_str(const rd_kafka_headers_t *h, const char *name, char *buf,
                   size_t size);

/* For each partition of topic, write the high watermark (end offset) to
 * end[p] and the offset committed by group to committed[p] (-1001,
 * RD_KAFKA_OFFSET_INVALID, when none).  Both arrays hold n entries and n
 * must equal the partition count.  Returns 0 or -1 after printing why. */
int it_offsets(struct it_ctx *ctx, const char *topic, const char *group, int n,
               int64_t *end, int64_t *committed);

/* Fail the test unless group's committed offset equals topic's end offset
 * on each of its n partitions (n <= 64): every request was answered and
 * committed. */
void it_require_committed_at_end(struct it_ctx *ctx, const char *topic,
                                 const char *group, int n);

/* Wait up to timeout_ms until group's committed offsets reach topic's end
 * offsets on its n partitions (n <= 64).  0 when they did, -1 at the
 * deadline.  For a worker that must re-answer and commit work whose results
 * a killed predecessor already produced. */
int it_wait_committed_at_end(struct it_ctx *ctx, const char *topic,
                             const char *group, int n, int64_t timeout_ms);

/* Wait until the broker reports at least min_members members in group
 * (polling DescribeConsumerGroups).  Returns the member count and sets
 * *state (may be NULL) to the group state's name ("PreparingRebalance",
 * "Stable", ...); -1 on timeout or when a worker exits unexpectedly. */
int it_group_wait_members(struct it_ctx *ctx, const char *group,
                          int min_members, int64_t timeout_ms,
                          const char **state);

/* Start the worker binary with "--brokers <brokers>", then "--http
 * 127.0.0.1:0" unless args hold --http, followed by the NULL-terminated
 * args.  stdout and stderr go to
 * <log-dir>/<test>.<label>.log.  The child gets SIGKILL if the test
 * process dies.  Returns NULL after printing why. */
struct it_proc *it_worker_spawn(struct it_ctx *ctx, const char *label,
                                const char *const *args);

/* Start any program: argv[0] is its path, argv NULL-terminated; output
 * and SIGKILL-on-death as for it_worker_spawn.  NULL after printing why. */
struct it_proc *it_proc_spawn(struct it_ctx *ctx, const char *label,
                              const char *const *argv);

/* The port a worker serves HTTP on, from its "http: serving on HOST:PORT"
 * log line (it_worker_spawn passes --http 127.0.0.1:0 unless the test
 * gives --http).  Waits up to timeout_ms; -1 after printing why. */
int it_proc_http_port(struct it_proc *p, int64_t timeout_ms);

/* GET http://127.0.0.1:port/path with HTTP/1.0, within timeout_ms.
 * Returns the status code with *body (NUL-terminated, caller frees) and
 * *len set to the answer's body; -1 when no complete answer came. */
int it_http_get(int port, const char *path, int timeout_ms, char **body,
                size_t *len);

pid_t it_proc_pid(const struct it_proc *p);
const char *it_proc_label(const struct it_proc *p);

/* Send sig and mark the process as expected to exit.  0 or -1. */
int it_proc_signal(struct it_proc *p, int sig);

/* Wait up to timeout_ms for the process to exit.  Returns 0 and writes
 * the waitpid status to *status, or -1 on timeout (process left running).
 * *elapsed_ms, when not NULL, gets the time spent waiting. */
int it_proc_wait(struct it_proc *p, int64_t timeout_ms, int *status,
                 int64_t *elapsed_ms);

/* 1 while the process has not been seen to exit. */
int it_proc_running(struct it_proc *p);

/* Wait until the process has installed a handler for sig (SigCgt in
 * /proc/<pid>/status), so that sending sig tests the program's
 * shutdown path rather than the default action.  0, or -1 on timeout or
 * when the process exits first. */
int it_proc_wait_signal_ready(struct it_proc *p, int sig, int64_t timeout_ms);

/* Describe a waitpid status ("exit 0", "signal 9") in buf; returns buf. */
const char *it_status_str(int status, char *buf, size_t size);

/* The path of the process's log file (borrowed). */
const char *it_proc_log_path(const struct it_proc *p);

/* Print the last lines lines of the process's log to stderr. */
void it_proc_log_tail(const struct it_proc *p, int lines);

/* 1 once a line of the process's log contains text; polls the log up to
 * timeout_ms (0: looks once), 0 when the time runs out or the process has
 * exited without writing it.  (Added for it_eos and it_stop_faults.) */
int it_proc_log_wait(struct it_proc *p, const char *text, int64_t timeout_ms);

/* Run kinfer-produce --brokers <the context's> args... (NULL-terminated)
 * with stdout captured into *out (malloc'd, NUL-terminated; caller frees)
 * and stderr shared with the test.  Returns its exit status, or -1 when it
 * died by a signal or did not exit within timeout_ms (then it is killed).
 * Shared by it_produce and it_binary. */
int it_produce_capture(struct it_ctx *ctx, const char *const *args,
                       int64_t timeout_ms, char **out);

#endif
