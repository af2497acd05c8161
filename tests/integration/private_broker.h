/* A Kafka broker of a test's own, for the integration tests that SIGKILL
 * and restart it (it_eos, it_stop_faults), so they need no ctest fixture.
 * It is started, stopped and found through ops/kafka.sh --dir: the
 * broker process belongs to that script (its directory holds kafka.pid);
 * this module keeps only the script's path, the directory and the port
 * (static: one private broker per test process).  Test thread only.
 */
#ifndef KINFER_IT_PRIVATE_BROKER_H
#define KINFER_IT_PRIVATE_BROKER_H

#include <stddef.h>

struct CMUnitTest;

/* main() of such a test: take "--kafka-sh PATH --broker-dir DIR" out of
 * argv, start the private broker there (stopping a leftover one first),
 * point the harness at it (KINFER_TEST_BROKERS), run tests through
 * it_main(name, ...) and stop the broker.  Returns it_main's result; 2
 * when an option is missing, 1 when the broker did not start (both after
 * printing why). */
int pb_main(const char *name, int argc, char **argv, struct CMUnitTest *tests,
            size_t n);

/* SIGKILL the private broker (pid from its kafka.pid) and wait, up to
 * 30 s, until it is gone.  0, or -1. */
int pb_kill(void);

/* Start the private broker again on the port it first had, so clients
 * keep their bootstrap address.  0 when the script's status says it
 * runs, else the script's exit status or -1. */
int pb_start(void);

#endif
