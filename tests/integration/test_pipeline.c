/*
 * eb_pipeline (idempotent producer, no transactions) on a real Apache
 * Kafka broker (tests/kafka/broker through eb_tkafka, one node for the
 * binary): a duplicate of a message still in flight settles only with that
 * message (and inherits its failure) while the broker is paused (SIGSTOP),
 * a read_committed consumer reads it once; a message lost in flight (the
 * broker killed with the request unread) is published again by the retry;
 * and an old event stays deduplicated for the whole window after it was
 * published, whatever its own event time.
 */
#include "eb_config.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_pipeline.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"
#include "eb_tloop.h"
#include "eb_util.h"

#include <errno.h>
#include <event2/event.h>

#define TOPIC "crm.kota.employee.created"

static struct event_base *base;
static eb_tkafka_t *kafka;

/* How many records of TOPIC a read_committed consumer reads whose event
 * has native id @p id (-1 if it cannot read). */
static int committed_events(const char *id)
{
        return eb_tcommitted_events(eb_tkafka_bootstrap(kafka), TOPIC, id);
}

static void spin(int ms)
{
        int64_t until = eb_mono_ms() + ms;

        while (eb_mono_ms() < until)
                event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

static struct eb_config *make_cfg(const char *timeout_ms)
{
        struct eb_config *cfg = eb_config_new_default();

        cfg->embedded = 0;
        cfg->brokers = eb_xstrdup(kafka ? eb_tkafka_bootstrap(kafka) : "");

        cfg->properties = calloc(1, sizeof(*cfg->properties));
        cfg->properties[0].key = strdup("message.timeout.ms");
        cfg->properties[0].value = strdup(timeout_ms);
        cfg->properties_cnt = 1;
        cfg->dedupe_capacity = 1000;
        return cfg;
}

static void test_inflight_duplicate_waits(void)
{
        struct eb_config *cfg;
        struct eb_source_cfg src = {0};
        eb_kafka_t *k;
        eb_pipeline_t *pl;
        struct eb_tresult a = {0, 0}, b = {0, 0};
        char err[256];

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg = make_cfg("20000");
        src.name = (char *)"acme";
        k = eb_kafka_new(base, cfg, err, sizeof(err));
        EB_REQUIRE(k != NULL);
        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        /* Warm up the topic so the next produce goes out promptly. */
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_0", 1000),
                                       1, NULL, eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 10000);
        EB_REQUIRE(a.done == 1 && a.err == 0);

        memset(&a, 0, sizeof(a));
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_1", 1000),
                                       1, NULL, eb_tresult_done, &a) == 0);
        /* The same event again (a webhook racing a poll). */
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_1", 1000),
                                       1, NULL, eb_tresult_done, &b) == 0);
        spin(800);
        EB_CHECK_INT(a.done, 0);
        EB_CHECK_INT(b.done, 0); /* must not be told "done" before a is */
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        eb_tresult_wait(base, &a, 15000);
        eb_tresult_wait(base, &b, 15000);
        EB_CHECK(a.done == 1 && a.err == 0);
        EB_CHECK(b.done == 1 && b.err == 0);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->published, 2);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->duplicates, 1);
        EB_CHECK_INT(committed_events("evt_1"), 1);
        eb_kafka_free(k);
        eb_pipeline_free(pl);
        eb_config_free(cfg);
}

static void test_inflight_duplicate_inherits_failure(void)
{
        struct eb_config *cfg;
        struct eb_source_cfg src = {0};
        eb_kafka_t *k;
        eb_pipeline_t *pl;
        struct eb_tresult a = {0, 0}, b = {0, 0}, c = {0, 0};
        char err[256];
        int i;

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg = make_cfg("1500");
        src.name = (char *)"acme";
        k = eb_kafka_new(base, cfg, err, sizeof(err));
        EB_REQUIRE(k != NULL);
        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_0", 1000),
                                       1, NULL, eb_tresult_done, &c) == 0);
        eb_tresult_wait(base, &c, 10000);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_2", 1000),
                                       1, NULL, eb_tresult_done, &a) == 0);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_2", 1000),
                                       1, NULL, eb_tresult_done, &b) == 0);
        eb_tresult_wait(base, &a, 15000);
        eb_tresult_wait(base, &b, 15000);
        EB_CHECK(a.done == 1 && a.err != 0);
        /* b's copy was only the one that failed: b fails too. */
        EB_CHECK(b.done == 1 && b.err != 0);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        /* The retry succeeds; the producer may need a moment to
         * reconnect, so retry like the poller does. */
        for (i = 0; i < 10; i++) {
                memset(&a, 0, sizeof(a));
                EB_REQUIRE(eb_pipeline_publish(pl, &src,
                                               eb_tone_event("evt_2", 1000), 1,
                                               NULL, eb_tresult_done, &a) == 0);
                eb_tresult_wait(base, &a, 15000);
                if (a.done == 1 && a.err == 0)
                        break;
                spin(500);
        }
        EB_CHECK(a.done == 1 && a.err == 0);
        /*
         * The failed copy's id was forgotten, so the retry publishes it
         * (not a duplicate). The copy that timed out in flight to the
         * paused broker may also have been written when it resumed: at
         * least once, one or two copies, never none.
         */
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->duplicates, 1);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->published, 2);
        {
                int copies = committed_events("evt_2");

                fprintf(stderr, "  info: %d copies of evt_2 in Kafka\n",
                        copies);
                EB_CHECK(copies == 1 || copies == 2);
        }
        eb_kafka_free(k);
        eb_pipeline_free(pl);
        eb_config_free(cfg);
}

/*
 * A message lost in flight: the broker is paused with the Produce request
 * in its socket, then killed (SIGKILL) before it read it, so nothing was
 * written, while librdkafka can only say "possibly persisted" when the
 * message times out. The publish fails; after the broker's restart, the
 * retry (the poller's rolled-back page, the platform's webhook retry) must
 * publish the event again, not take it for a duplicate of the lost copy:
 * at least once means a duplicate is acceptable, a loss is not.
 */
static void test_lost_inflight_is_republished(void)
{
        struct eb_config *cfg;
        struct eb_source_cfg src = {0};
        eb_kafka_t *k;
        eb_pipeline_t *pl;
        struct eb_tresult a = {0, 0};
        char err[256];
        int i;

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg = make_cfg("1500");
        src.name = (char *)"acme";
        k = eb_kafka_new(base, cfg, err, sizeof(err));
        EB_REQUIRE(k != NULL);
        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_w", 1000),
                                       1, NULL, eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 10000);
        EB_CHECK(a.done == 1 && a.err == 0);

        memset(&a, 0, sizeof(a));
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        EB_REQUIRE(eb_pipeline_publish(pl, &src,
                                       eb_tone_event("evt_lost", 1000), 1, NULL,
                                       eb_tresult_done, &a) == 0);
        spin(300); /* the request goes out, into the paused broker's socket */
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "kill", 1), 0);
        eb_tresult_wait(base, &a, 15000);
        EB_CHECK(a.done == 1 && a.err != 0);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "restart", 1), 0);
        for (i = 0; i < 20; i++) {
                memset(&a, 0, sizeof(a));
                EB_REQUIRE(eb_pipeline_publish(
                                   pl, &src, eb_tone_event("evt_lost", 1000), 1,
                                   NULL, eb_tresult_done, &a) == 0);
                eb_tresult_wait(base, &a, 15000);
                if (a.done == 1 && a.err == 0)
                        break;
                spin(500);
        }
        EB_CHECK(a.done == 1 && a.err == 0);
        fprintf(stderr, "  info: published %llu, duplicates %llu\n",
                (unsigned long long)eb_pipeline_stats(pl, "acme")->published,
                (unsigned long long)eb_pipeline_stats(pl, "acme")->duplicates);
        EB_CHECK_INT(committed_events("evt_lost"), 1);
        eb_kafka_free(k);
        eb_pipeline_free(pl);
        eb_config_free(cfg);
}

static void test_old_event_stays_deduplicated(void)
{
        struct eb_config *cfg;
        struct eb_source_cfg src = {0};
        eb_kafka_t *k;
        eb_pipeline_t *pl;
        struct eb_tresult a = {0, 0}, b = {0, 0};
        char err[256];
        /* 2024-05-15: far outside the 72 h window. */
        int64_t old = 1715782950000LL;

        EB_REQUIRE(kafka != NULL);
        cfg = make_cfg("20000");
        src.name = (char *)"acme";
        k = eb_kafka_new(base, cfg, err, sizeof(err));
        EB_REQUIRE(k != NULL);
        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_old", old),
                                       1, NULL, eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 10000);
        EB_REQUIRE(a.done == 1 && a.err == 0);
        EB_REQUIRE(eb_pipeline_publish(pl, &src, eb_tone_event("evt_old", old),
                                       1, NULL, eb_tresult_done, &b) == 0);
        eb_tresult_wait(base, &b, 10000);
        EB_CHECK(b.done == 1 && b.err == 0);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->published, 1);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->duplicates, 1);
        EB_CHECK_INT(committed_events("evt_old"), 1);
        eb_kafka_free(k);
        eb_pipeline_free(pl);
        eb_config_free(cfg);
}

int main(void)
{
        eb_log_set_level(EB_LOG_ERROR);
        base = event_base_new();
        kafka = eb_tkafka_start(1, NULL);
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        EB_RUN(test_inflight_duplicate_waits);
        EB_RUN(test_inflight_duplicate_inherits_failure);
        EB_RUN(test_old_event_stays_deduplicated);
        EB_RUN(test_lost_inflight_is_republished);
        eb_tkafka_stop(kafka);
        event_base_free(base);
        eb_log_shutdown();
        return eb_test_summary();
}
