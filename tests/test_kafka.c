/* Unit tests of the Kafka layer's (lib/shared/kafka.c) behaviour that
 * needs no broker: secret property values never reach an error message,
 * and the connect timeout gives up on an unreachable cluster in time. */
#include <string.h>

#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include "kinfer/kafka_prop.h"
#include "kinfer/log.h"
#include "shared/kafka.h"
#include "shared/util.h"

static void test_secret_names(void **state)
{
    (void)state;
    static const char *const secret[] = {
        "sasl.password",    "sasl.username",         "SASL.Mechanisms",
        "ssl.key.password", "ssl.keystore.password", "ssl_key",
        "my.client.secret", "oauth.TOKEN.url",       "sasl.passwrd",
    };
    static const char *const plain[] = {"linger.ms", "bootstrap.servers",
                                        "security.protocol", "xsasl.foo",
                                        "ssl.ca.location"};
    for (size_t i = 0; i < sizeof secret / sizeof secret[0]; i++)
        if (!kinfer_kafka_prop_is_secret(secret[i]))
            fail_msg("%s should count as secret", secret[i]);
    for (size_t i = 0; i < sizeof plain / sizeof plain[0]; i++)
        if (kinfer_kafka_prop_is_secret(plain[i]))
            fail_msg("%s should not count as secret", plain[i]);
    assert_false(kinfer_kafka_prop_is_secret(NULL));
}

/* Create a producer with one user (-X) property; returns the error text
 * (static) after asserting the creation failed. */
static const char *new_fails(const char *name, const char *value)
{
    static char err[512];
    const struct kinfer_kafka_prop p = {name, value};
    const struct kinfer_kafka_setup s = {
        .role = KINFER_KAFKA_PRODUCER,
        .brokers = "127.0.0.1:1",
        .user = &p,
        .n_user = 1,
    };
    rd_kafka_t *rk = NULL;
    err[0] = '\0';
    assert_int_equal(kinfer_kafka_new(&s, &rk, err, sizeof err),
                     KINFER_ERR_CONFIG);
    assert_null(rk);
    return err;
}

static void test_unknown_secret_property_redacted(void **state)
{
    (void)state;
    const char *err = new_fails("sasl.passwrd", "hunter2");
    assert_null(strstr(err, "hunter2"));
    assert_string_equal(err, "-X sasl.passwrd=[redacted]: No such "
                             "configuration property: \"sasl.passwrd\"");
}

/* librdkafka quotes a rejected value in its reason: that copy is redacted
 * too. */
static void test_bad_secret_value_redacted(void **state)
{
    (void)state;
    const char *err =
        new_fails("sasl.kerberos.min.time.before.relogin", "hunter2");
    assert_null(strstr(err, "hunter2"));
    assert_non_null(strstr(err, "-X sasl.kerberos.min.time.before.relogin="
                                "[redacted]: "));
    assert_non_null(strstr(err, "[redacted]"));
}

static void test_plain_property_value_shown(void **state)
{
    (void)state;
    const char *err = new_fails("linger.ms", "abc");
    assert_non_null(strstr(err, "-X linger.ms=abc: "));
}

static rd_kafka_t *unreachable_producer(void)
{
    /* Port 1 on loopback: nothing listens, every connection is refused. */
    const struct kinfer_kafka_prop quiet[] = {{"log_level", "0"}};
    const struct kinfer_kafka_setup s = {
        .role = KINFER_KAFKA_PRODUCER,
        .brokers = "127.0.0.1:1",
        .user = quiet,
        .n_user = 1,
    };
    rd_kafka_t *rk = NULL;
    char err[256];
    assert_int_equal(kinfer_kafka_new(&s, &rk, err, sizeof err), KINFER_OK);
    return rk;
}

static void test_watch_gives_up(void **state)
{
    (void)state;
    rd_kafka_t *rk = unreachable_producer();
    struct kinfer_kafka_watch wd;
    int64_t t0 = kinfer_now_ms();
    kinfer_kafka_watch_start(&wd, 1500);
    int rc = 0;
    while (rc == 0 && kinfer_now_ms() - t0 < 10000)
        rc = kinfer_kafka_watch_check(&wd, rk, 0);
    int64_t took = kinfer_now_ms() - t0;
    assert_int_equal(rc, -1);
    assert_false(wd.connected);
    /* At the bound, give or take one 500 ms probe. */
    assert_true(took >= 1500);
    assert_true(took < 1500 + 2000);
    rd_kafka_destroy(rk);
}

static void test_watch_disabled_or_reached(void **state)
{
    (void)state;
    rd_kafka_t *rk = unreachable_producer();
    struct kinfer_kafka_watch wd;
    kinfer_kafka_watch_start(&wd, 0);
    wd.start_ms -= 1000000; /* long past any bound */
    assert_int_equal(kinfer_kafka_watch_check(&wd, rk, 0), 0);
    /* The caller's own success ends the watch without a probe. */
    kinfer_kafka_watch_start(&wd, 1);
    assert_int_equal(kinfer_kafka_watch_check(&wd, rk, 1), 0);
    assert_true(wd.connected);
    wd.start_ms -= 1000000;
    assert_int_equal(kinfer_kafka_watch_check(&wd, rk, 0), 0);
    rd_kafka_destroy(rk);
}

int main(void)
{
    kinfer_log_set_level(KINFER_LOG_ERROR);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_secret_names),
        cmocka_unit_test(test_unknown_secret_property_redacted),
        cmocka_unit_test(test_bad_secret_value_redacted),
        cmocka_unit_test(test_plain_property_value_shown),
        cmocka_unit_test(test_watch_gives_up),
        cmocka_unit_test(test_watch_disabled_or_reached),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
