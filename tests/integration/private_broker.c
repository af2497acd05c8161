/* A private broker through ops/kafka.sh --dir (see private_broker.h). */
#include "private_broker.h"

#include "harness.h"

#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>

static const char *kafka_sh;   /* ops/kafka.sh */
static const char *broker_dir; /* the private broker's --dir */
static char broker_port[16];

/* Run "bash kafka_sh <args> --dir broker_dir"; the first output line goes
 * to out (may be NULL).  Returns the exit status, or -1. */
static int kafka(const char *args, char *out, size_t size)
{
    char cmd[2048];
    snprintf(cmd, sizeof cmd, "bash '%s' %s --dir '%s'", kafka_sh, args,
             broker_dir);
    FILE *f = popen(cmd, "r");
    if (f == NULL)
        return -1;
    char line[256] = "";
    if (fgets(line, sizeof line, f) != NULL && out != NULL) {
        line[strcspn(line, "\r\n")] = '\0';
        snprintf(out, size, "%s", line);
    }
    while (fgets(line, sizeof line, f) != NULL)
        ;
    int st = pclose(f);
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

int pb_kill(void)
{
    char path[1024];
    snprintf(path, sizeof path, "%s/kafka.pid", broker_dir);
    FILE *f = fopen(path, "r");
    long pid = 0;
    if (f == NULL || fscanf(f, "%ld", &pid) != 1 || pid <= 1) {
        if (f != NULL)
            fclose(f);
        return -1;
    }
    fclose(f);
    if (kill((pid_t)pid, SIGKILL) != 0)
        return -1;
    int64_t deadline = it_now_ms() + 30000;
    while (kill((pid_t)pid, 0) == 0 || errno != ESRCH) {
        if (it_now_ms() > deadline)
            return -1;
        struct timespec ts = {0, 20 * 1000 * 1000};
        nanosleep(&ts, NULL); /* polling a condition, with a deadline */
    }
    return 0;
}

int pb_start(void)
{
    char args[64], addr[128] = "";
    snprintf(args, sizeof args, "start --port %s", broker_port);
    if (kafka(args, addr, sizeof addr) == 0)
        return 0;
    /* The script's own status says whether the broker runs, whatever
     * went wrong after starting it. */
    return kafka("status", NULL, 0);
}

int pb_main(const char *name, int argc, char **argv, struct CMUnitTest *tests,
            size_t n)
{
    int kept = 0;
    for (int i = 0; i < argc; i++) {
        if (i + 1 < argc && strcmp(argv[i], "--kafka-sh") == 0)
            kafka_sh = argv[++i];
        else if (i + 1 < argc && strcmp(argv[i], "--broker-dir") == 0)
            broker_dir = argv[++i];
        else
            argv[kept++] = argv[i];
    }
    argv[kept] = NULL;
    if (kafka_sh == NULL || broker_dir == NULL) {
        fprintf(stderr, "it_%s: --kafka-sh and --broker-dir needed\n", name);
        return 2;
    }
    char addr[128] = "";
    (void)kafka("stop", NULL, 0);
    if (kafka("start", addr, sizeof addr) != 0 || strchr(addr, ':') == NULL) {
        fprintf(stderr, "it_%s: the private broker did not start\n", name);
        return 1;
    }
    snprintf(broker_port, sizeof broker_port, "%s", strrchr(addr, ':') + 1);
    setenv("KINFER_TEST_BROKERS", addr, 1);
    int rc = it_main(name, kept, argv, tests, n);
    (void)kafka("stop", NULL, 0);
    return rc;
}
