/* kinfer-bench-watch: the stopwatch of the end-to-end benchmark
 * (tests/bench/e2e.sh).  It samples the output topic's end offsets while a
 * contender drains a preloaded backlog, and reports the steady-state rate
 * from the first sample that saw a result to the one that saw the last, the
 * CPU the contender and the broker spent over that window (from
 * /proc/PID/stat), the CPU everything else on the machine spent (noise),
 * and the contender's peak RSS.  Output: key=value lines on stdout. */
#include <getopt.h>
#include <inttypes.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <librdkafka/rdkafka.h>

#define EDGE_TIMEOUT_MS 15000 /* reading one result for its size */
#define QUERY_TIMEOUT_MS 5000 /* one end-offset query */
#define END_GAP_MS 1          /* densest sampling, near the end */
#define IDLE_SAMPLE_MS 100    /* sparsest sampling, far from the end */

struct cpu {
    long long pid_ticks;    /* contender's utime + stime */
    long long broker_ticks; /* broker JVM's utime + stime */
    long long busy_ticks;   /* all CPUs, not idle or iowait */
};

static void die(const char *what, const char *why)
{
    fprintf(stderr, "kinfer-bench-watch: %s: %s\n", what, why);
    exit(2);
}

static int64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void sleep_ms(long ms)
{
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

/* utime + stime of pid in clock ticks, or -1 when it is gone.  Fields 14
 * and 15 of /proc/PID/stat, counted after the command name's ')' because
 * the name may hold spaces. */
static long long proc_ticks(long pid)
{
    char path[64], buf[1024];
    if (pid <= 0)
        return 0;
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    char *p = strrchr(buf, ')');
    if (p == NULL)
        return -1;
    unsigned long long ut = 0, st = 0;
    /* After ")": state(3) ppid pgrp session tty tpgid flags minflt cminflt
     * majflt cmajflt utime(14) stime(15). */
    if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu",
               &ut, &st) != 2)
        return -1;
    return (long long)(ut + st);
}

/* True while pid runs; a zombie (exited, not yet reaped by its parent)
 * does not count. */
static int alive(long pid)
{
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p != NULL && p[1] == ' ' && p[2] != 'Z' && p[2] != 'X';
}

/* Ticks all CPUs were busy since boot (first line of /proc/stat). */
static long long busy_ticks(void)
{
    unsigned long long v[8] = {0};
    FILE *f = fopen("/proc/stat", "r");
    if (f == NULL)
        return 0;
    int n = fscanf(f, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0],
                   &v[1], &v[2], &v[3], &v[4], &v[5], &v[6], &v[7]);
    fclose(f);
    if (n < 8)
        return 0;
    /* user nice system idle iowait irq softirq steal: skip idle, iowait */
    return (long long)(v[0] + v[1] + v[2] + v[5] + v[6] + v[7]);
}

/* Peak resident set (VmHWM) of pid in kB, or -1. */
static long long rss_peak_kb(long pid)
{
    char path[64], line[256];
    long long kb = -1;
    if (pid <= 0)
        return -1;
    snprintf(path, sizeof path, "/proc/%ld/status", pid);
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return -1;
    while (fgets(line, sizeof line, f) != NULL)
        if (sscanf(line, "VmHWM: %lld kB", &kb) == 1)
            break;
    fclose(f);
    return kb;
}

static void cpu_sample(struct cpu *c, long pid, long broker)
{
    c->pid_ticks = proc_ticks(pid);
    c->broker_ticks = proc_ticks(broker);
    c->busy_ticks = busy_ticks();
}

static int partition_count(rd_kafka_t *rk, const char *topic)
{
    const struct rd_kafka_metadata *md;
    rd_kafka_topic_t *t = rd_kafka_topic_new(rk, topic, NULL);
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, t, &md, 10000);
    rd_kafka_topic_destroy(t);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("metadata", rd_kafka_err2str(e));
    int n = -1;
    if (md->topic_cnt == 1 && md->topics[0].err == RD_KAFKA_RESP_ERR_NO_ERROR)
        n = md->topics[0].partition_cnt;
    rd_kafka_metadata_destroy(md);
    if (n <= 0)
        die(topic, "unknown topic or no partitions");
    return n;
}

/* End offset of every partition (in one ListOffsets request: timestamp -1
 * means "latest") into hi; returns their sum, or -1 on error. */
static int64_t end_offsets(rd_kafka_t *rk, const char *topic, int np,
                           int64_t *hi)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        rd_kafka_topic_partition_list_add(l, topic, p)->offset =
            RD_KAFKA_OFFSET_END;
    int64_t sum = -1;
    if (rd_kafka_offsets_for_times(rk, l, QUERY_TIMEOUT_MS) ==
        RD_KAFKA_RESP_ERR_NO_ERROR) {
        sum = 0;
        for (int i = 0; i < l->cnt; i++) {
            if (l->elems[i].err != RD_KAFKA_RESP_ERR_NO_ERROR ||
                l->elems[i].offset < 0) {
                sum = -1;
                break;
            }
            hi[l->elems[i].partition] = l->elems[i].offset;
            sum += l->elems[i].offset;
        }
    }
    rd_kafka_topic_partition_list_destroy(l);
    return sum;
}

/* Reads the message at offset at[p] of every partition with at[p] >= 0
 * and puts the value size of one of them into *bytes (what a result of
 * this run weighs).  Returns 0 when one was read. */
static int read_first(rd_kafka_t *rk, const char *topic, int np,
                      const int64_t *at, long long *bytes)
{
    rd_kafka_topic_partition_list_t *l = rd_kafka_topic_partition_list_new(np);
    for (int p = 0; p < np; p++)
        if (at[p] >= 0)
            rd_kafka_topic_partition_list_add(l, topic, p)->offset = at[p];
    rd_kafka_resp_err_t e = rd_kafka_assign(rk, l);
    rd_kafka_topic_partition_list_destroy(l);
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR)
        die("assign", rd_kafka_err2str(e));
    int got = 0;
    int64_t deadline = now_ms() + EDGE_TIMEOUT_MS;
    while (!got && now_ms() < deadline) {
        rd_kafka_message_t *m = rd_kafka_consumer_poll(rk, 100);
        if (m == NULL)
            continue;
        if (m->err == RD_KAFKA_RESP_ERR_NO_ERROR) {
            *bytes = (long long)m->len;
            got = 1;
        }
        rd_kafka_message_destroy(m);
    }
    rd_kafka_assign(rk, NULL);
    return got ? 0 : -1;
}

/* Sleep before the next sample: "interval" until a rate is known, then a
 * tenth of the projected time to the end, within [END_GAP_MS, idle]:
 * sparse samples while far from the end (each one is a request the broker
 * serves, which would count as its CPU), dense ones near it (the end's
 * sampling gap is the rate's only error). */
static long next_sleep_ms(long interval, int64_t expect, int64_t count,
                          int64_t count0, int64_t elapsed_ms)
{
    if (count <= count0 || elapsed_ms <= 0)
        return interval;
    double rate_per_ms = (double)(count - count0) / (double)elapsed_ms;
    double left_ms = (double)(expect - count) / rate_per_ms;
    long ms = (long)(left_ms / 10.0);
    if (ms > IDLE_SAMPLE_MS)
        ms = IDLE_SAMPLE_MS;
    if (ms < END_GAP_MS)
        ms = END_GAP_MS;
    return ms;
}

static void usage(FILE *f)
{
    fputs("Usage: kinfer-bench-watch --brokers LIST --topic T --expect N\n"
          "         [--pid PID] [--broker-pid PID] [--first-timeout S]\n"
          "         [--timeout S] [--interval-ms MS] [--series FILE]\n"
          "\n"
          "Sample topic T's end offsets until it holds N messages, or\n"
          "--timeout seconds (default 60) passed since the first one, or\n"
          "--first-timeout seconds (default 60) passed without any, or PID\n"
          "exited.  Then print key=value lines: status (done, partial,\n"
          "none, died), count, rate (messages/s from the first sample that\n"
          "saw one to the last sample), CPU per message of PID and of the\n"
          "broker (/proc/PID/stat over the same window), CPU %% of PID, of\n"
          "the broker and of everything else, PID's peak RSS, the size of\n"
          "one message.  --interval-ms: sampling before the first message\n"
          "(default 10).  --series: write \"ms count\" samples to FILE.\n"
          "Exit 0 when done, 1 when partial, none or died, 2 on errors.\n",
          f);
}

static long parse_long(const char *s, const char *what)
{
    char *end;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || v < 0)
        die(what, "expected a number >= 0");
    return v;
}

int main(int argc, char **argv)
{
    static const struct option longopts[] = {
        {"brokers", required_argument, NULL, 'b'},
        {"topic", required_argument, NULL, 't'},
        {"expect", required_argument, NULL, 'n'},
        {"pid", required_argument, NULL, 'p'},
        {"broker-pid", required_argument, NULL, 'k'},
        {"first-timeout", required_argument, NULL, 'f'},
        {"timeout", required_argument, NULL, 'T'},
        {"interval-ms", required_argument, NULL, 'i'},
        {"series", required_argument, NULL, 's'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *brokers = NULL, *topic = NULL, *series_path = NULL;
    long expect = -1, pid = 0, broker = 0, first_s = 60, timeout_s = 60;
    long interval = 10;
    int ch;
    while ((ch = getopt_long(argc, argv, "h", longopts, NULL)) != -1) {
        switch (ch) {
        case 'b':
            brokers = optarg;
            break;
        case 't':
            topic = optarg;
            break;
        case 'n':
            expect = parse_long(optarg, "--expect");
            break;
        case 'p':
            pid = parse_long(optarg, "--pid");
            break;
        case 'k':
            broker = parse_long(optarg, "--broker-pid");
            break;
        case 'f':
            first_s = parse_long(optarg, "--first-timeout");
            break;
        case 'T':
            timeout_s = parse_long(optarg, "--timeout");
            break;
        case 'i':
            interval = parse_long(optarg, "--interval-ms");
            break;
        case 's':
            series_path = optarg;
            break;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (brokers == NULL || topic == NULL || expect < 1 || optind != argc) {
        usage(stderr);
        return 2;
    }
    if (interval < 1)
        interval = 1;

    char err[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const char *props[][2] = {
        {"bootstrap.servers", brokers},
        {"group.id", "kinfer-bench-watch"}, /* never joined or committed */
        {"enable.auto.commit", "false"},
        {"enable.auto.offset.store", "false"},
        /* Only single messages are read: keep the prefetch small. */
        {"queued.max.messages.kbytes", "1024"},
        {"client.id", "kinfer-bench-watch"},
    };
    for (size_t i = 0; i < sizeof props / sizeof props[0]; i++)
        if (rd_kafka_conf_set(conf, props[i][0], props[i][1], err,
                              sizeof err) != RD_KAFKA_CONF_OK)
            die(props[i][0], err);
    rd_kafka_t *rk = rd_kafka_new(RD_KAFKA_CONSUMER, conf, err, sizeof err);
    if (rk == NULL)
        die("rd_kafka_new", err);
    int np = partition_count(rk, topic);
    int64_t *hi = calloc((size_t)np, sizeof *hi);
    int64_t *at = calloc((size_t)np, sizeof *at);
    if (hi == NULL || at == NULL)
        die("calloc", "out of memory");
    FILE *series = NULL;
    if (series_path != NULL && (series = fopen(series_path, "w")) == NULL)
        die(series_path, "cannot open");

    const char *status = "none";
    int64_t start = now_ms(), t0 = 0, t1 = 0, t1_prev = 0, last_count = -1;
    int64_t count0 = 0, count = 0;
    int seen = 0;
    struct cpu c0 = {0}, c1 = {0};
    for (;;) {
        int64_t sum = end_offsets(rk, topic, np, hi);
        int64_t t = now_ms();
        if (sum < 0)
            die(topic, "end offsets unavailable");
        if (series != NULL && sum != last_count)
            fprintf(series, "%" PRId64 " %" PRId64 "\n", t - start, sum);
        last_count = sum;
        if (!seen && sum > 0) {
            /* The window opens at the first result: start-up and the
             * group join are not part of the steady state. */
            seen = 1;
            t0 = t;
            count0 = sum;
            cpu_sample(&c0, pid, broker);
        }
        count = sum;
        t1_prev = t1;
        t1 = t;
        if (sum >= expect) {
            status = "done";
            break;
        }
        if (pid > 0 && !alive(pid)) {
            status = "died";
            break;
        }
        if (!seen && t - start > first_s * 1000)
            break;
        if (seen && t - t0 > timeout_s * 1000) {
            status = "partial";
            break;
        }
        sleep_ms(next_sleep_ms(interval, expect, count, count0, t - t0));
    }
    cpu_sample(&c1, pid, broker);
    long long rss = rss_peak_kb(pid);
    if (series != NULL)
        fclose(series);

    printf("status=%s\nexpect=%ld\ncount=%" PRId64 "\n", status, expect, count);
    printf("first_wait_ms=%" PRId64 "\n", seen ? t0 - start : -1);
    if (seen) {
        long long bytes = 0;
        for (int p = 0; p < np; p++)
            at[p] = hi[p] > 0 ? 0 : -1;
        if (read_first(rk, topic, np, at, &bytes) != 0)
            bytes = -1;
        /* Both ends of the window are samples of what was visible, so
         * the rate is exact up to the sampling gap at the end, which the
         * loop keeps short. */
        double window_s = (double)(t1 - t0) / 1000.0;
        int64_t n = count - count0;
        printf("window_ms=%" PRId64 "\ncount_at_first=%" PRId64 "\n", t1 - t0,
               count0);
        printf("end_gap_ms=%" PRId64 "\n", t1 - t1_prev);
        printf("rate=%.1f\n", window_s > 0 ? (double)n / window_s : 0.0);
        printf("result_bytes=%lld\n", bytes);
        double tick_us = 1e6 / (double)sysconf(_SC_CLK_TCK);
        /* -1: the process was gone at one end of the window. */
        long long dp = c0.pid_ticks >= 0 && c1.pid_ticks >= 0
                           ? c1.pid_ticks - c0.pid_ticks
                           : -1;
        long long db = c0.broker_ticks >= 0 && c1.broker_ticks >= 0
                           ? c1.broker_ticks - c0.broker_ticks
                           : -1;
        long long dall = c1.busy_ticks - c0.busy_ticks;
        if (n > 0 && pid > 0 && dp >= 0)
            printf("cpu_us_per_req=%.2f\n", (double)dp * tick_us / (double)n);
        if (n > 0 && broker > 0 && db >= 0)
            printf("broker_cpu_us_per_req=%.2f\n",
                   (double)db * tick_us / (double)n);
        if (window_s > 0) {
            /* Percent of one core used by neither the contender nor the
             * broker (this program, other work on the machine). */
            long long other = dall - (dp > 0 ? dp : 0) - (db > 0 ? db : 0);
            printf("cpu_pct=%.0f\nbroker_cpu_pct=%.0f\nother_cpu_pct=%.0f\n",
                   (double)dp * tick_us / 1e4 / window_s,
                   (double)db * tick_us / 1e4 / window_s,
                   (double)(other > 0 ? other : 0) * tick_us / 1e4 / window_s);
        }
    }
    printf("rss_peak_kb=%lld\n", rss);
    fflush(stdout);
    rd_kafka_consumer_close(rk);
    rd_kafka_destroy(rk);
    free(hi);
    free(at);
    return strcmp(status, "done") == 0 ? 0 : 1;
}
