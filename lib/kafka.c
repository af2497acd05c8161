/* Building librdkafka configurations and routing librdkafka's own log
 * lines into kinfer's log. */
#include <string.h>

#include "kafka.h"
#include "kinfer/log.h"
#include "util.h"

static void kafka_log_cb(const rd_kafka_t *rk, int level, const char *fac,
                         const char *buf)
{
    /* syslog levels: 0-3 error, 4 warning, 5-6 info, 7 debug. */
    int ours = level <= 3   ? KINFER_LOG_ERROR
               : level == 4 ? KINFER_LOG_WARN
               : level <= 6 ? KINFER_LOG_INFO
                            : KINFER_LOG_DEBUG;
    kinfer_log(ours, "librdkafka %s %s: %s", rd_kafka_name(rk), fac, buf);
}

static int set_all(rd_kafka_conf_t *conf, const struct kinfer_kafka_prop *p,
                   size_t n, const char *origin, char *err, size_t errsize)
{
    for (size_t i = 0; i < n; i++) {
        char why[256];
        if (rd_kafka_conf_set(conf, p[i].name, p[i].value, why, sizeof why) !=
            RD_KAFKA_CONF_OK) {
            kinfer_fmt(err, errsize, "%s%s=%s: %s", origin, p[i].name,
                       p[i].value, why);
            return -1;
        }
    }
    return 0;
}

rd_kafka_conf_t *kinfer_kafka_conf(const char *brokers,
                                   const struct kinfer_kafka_prop *defaults,
                                   size_t n_defaults,
                                   const struct kinfer_kafka_prop *user,
                                   size_t n_user, char *err, size_t errsize)
{
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    const struct kinfer_kafka_prop base = {"bootstrap.servers", brokers};
    if (set_all(conf, &base, 1, "--brokers: ", err, errsize) != 0 ||
        set_all(conf, defaults, n_defaults, "", err, errsize) != 0 ||
        set_all(conf, user, n_user, "-X ", err, errsize) != 0) {
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_log_cb(conf, kafka_log_cb);
    return conf;
}

int kinfer_kafka_warm(rd_kafka_t *rk, const char *topic, int timeout_ms,
                      char *err, size_t errsize)
{
    rd_kafka_topic_t *rkt = rd_kafka_topic_new(rk, topic, NULL);
    if (rkt == NULL) {
        kinfer_fmt(err, errsize, "topic '%s': %s", topic,
                   rd_kafka_err2str(rd_kafka_last_error()));
        return -1;
    }
    const struct rd_kafka_metadata *md = NULL;
    rd_kafka_resp_err_t e = rd_kafka_metadata(rk, 0, rkt, &md, timeout_ms);
    int rc = 0;
    if (e != RD_KAFKA_RESP_ERR_NO_ERROR) {
        kinfer_fmt(err, errsize, "metadata for topic '%s': %s", topic,
                   rd_kafka_err2str(e));
        rc = -1;
    } else if (md->topic_cnt != 1 || md->topics[0].err != 0) {
        kinfer_fmt(err, errsize, "topic '%s': %s", topic,
                   md->topic_cnt == 1 ? rd_kafka_err2str(md->topics[0].err)
                                      : "no metadata");
        rc = -1;
    }
    if (md != NULL)
        rd_kafka_metadata_destroy(md);
    rd_kafka_topic_destroy(rkt);
    return rc;
}
