/* Helpers of the pipeline-semantics integration tests (pipe_util.h). */
#include "pipe_util.h"

#include <stdio.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

int64_t pu_epoch_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void dr_cb(rd_kafka_t *rk, const rd_kafka_message_t *m, void *opaque)
{
    (void)rk;
    int *failed = opaque;
    if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR)
        (*failed)++;
}

static int failed_deliveries;

rd_kafka_t *pu_producer_new(struct it_ctx *ctx)
{
    char errstr[512];
    rd_kafka_conf_t *conf = rd_kafka_conf_new();
    if (rd_kafka_conf_set(conf, "bootstrap.servers", it_ctx_brokers(ctx),
                          errstr, sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "enable.idempotence", "true", errstr,
                          sizeof errstr) != RD_KAFKA_CONF_OK ||
        rd_kafka_conf_set(conf, "linger.ms", "5", errstr, sizeof errstr) !=
            RD_KAFKA_CONF_OK) {
        fprintf(stderr, "pipe: conf: %s\n", errstr);
        rd_kafka_conf_destroy(conf);
        return NULL;
    }
    rd_kafka_conf_set_dr_msg_cb(conf, dr_cb);
    rd_kafka_conf_set_opaque(conf, &failed_deliveries);
    rd_kafka_t *rk =
        rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof errstr);
    if (rk == NULL)
        fprintf(stderr, "pipe: rd_kafka_new: %s\n", errstr);
    return rk;
}

int pu_produce(rd_kafka_t *rk, const char *topic, int32_t partition,
               const char *key, const char *value, int64_t ts,
               rd_kafka_headers_t *headers)
{
    for (;;) {
        rd_kafka_resp_err_t err = rd_kafka_producev(
            rk, RD_KAFKA_V_TOPIC(topic),
            RD_KAFKA_V_PARTITION(partition >= 0 ? partition
                                                : RD_KAFKA_PARTITION_UA),
            RD_KAFKA_V_KEY(key, key ? strlen(key) : 0),
            RD_KAFKA_V_VALUE((void *)value, strlen(value)),
            RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY), RD_KAFKA_V_TIMESTAMP(ts),
            RD_KAFKA_V_HEADERS(headers != NULL ? headers
                                               : rd_kafka_headers_new(0)),
            RD_KAFKA_V_END);
        if (err == RD_KAFKA_RESP_ERR_NO_ERROR)
            return 0;
        if (err != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
            fprintf(stderr, "pipe: produce to %s: %s\n", topic,
                    rd_kafka_err2str(err));
            return -1;
        }
        rd_kafka_poll(rk, 10);
    }
}

int pu_flush(rd_kafka_t *rk, int timeout_ms)
{
    if (rd_kafka_flush(rk, timeout_ms) != RD_KAFKA_RESP_ERR_NO_ERROR) {
        fprintf(stderr, "pipe: flush timed out\n");
        return -1;
    }
    int failed = failed_deliveries;
    failed_deliveries = 0;
    if (failed > 0)
        fprintf(stderr, "pipe: %d deliveries failed\n", failed);
    return failed > 0 ? -1 : 0;
}

void pu_scale_request(char *buf, size_t size, const char *id, int factor,
                      double value, const char *extra)
{
    snprintf(buf, size,
             "{\"id\":\"%s\",\"model_name\":\"scale\",\"parameters\":{"
             "\"factor\":%d%s},\"inputs\":[{\"name\":\"x\",\"shape\":[1],"
             "\"datatype\":\"FP64\",\"data\":[%.17g]}]}",
             id, factor, extra != NULL ? extra : "", value);
}

int pu_result_value(const struct it_msg *m, double *v, char *err,
                    size_t errsize)
{
    json_error_t jerr;
    json_t *res =
        m->value != NULL ? json_loadb(m->value, m->len, 0, &jerr) : NULL;
    int rc = -1;
    const char *e = json_string_value(json_object_get(res, "error"));
    json_t *outs = json_object_get(res, "outputs");
    json_t *x =
        json_array_get(json_object_get(json_array_get(outs, 0), "data"), 0);
    if (e != NULL) {
        snprintf(err, errsize, "%s", e);
        rc = 0;
    } else if (json_is_number(x)) {
        *v = json_number_value(x);
        rc = 1;
    }
    json_decref(res);
    return rc;
}
