/*
 * eb_pipeline in exactly-once mode.
 *
 * On a real Apache Kafka broker (tests/kafka/broker through eb_tkafka,
 * one node for the binary): publishes are settled by the commit of their
 * transaction (a duplicate waits for it) and a read_committed consumer
 * reads the event once; checkpoints are committed with the events and come
 * back through eb_pipeline_restore() together with the dedupe ids; idle
 * checkpoints are written sparingly; and a second instance with the same
 * transactional.id fences the first, whose pending publish fails (never
 * visible to read_committed) and whose later publishes are refused.
 *
 * On librdkafka 2.0.2's mock cluster, only the abortable commit failure
 * redone transparently: it needs EndTxn to answer UNKNOWN_PRODUCER_ID
 * once (injected).
 */
#include "eb_config.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_pipeline.h"
#include "eb_state.h"
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
/* The cases' config and producer: on the real broker, then on the mock. */
static struct eb_config *cfg;
static eb_kafka_t *k;

static struct eb_event **one_event(const char *id)
{
        return eb_tone_event(id, eb_now_ms());
}

/* How many records of TOPIC a read_committed consumer reads whose event
 * has native id @p id (-1 if it cannot read). */
static int committed_events(const char *id)
{
        return eb_tcommitted_events(eb_kafka_bootstrap(k), TOPIC, id);
}

static void on_txn(void *arg, int err, const char *errstr)
{
        struct eb_tresult *r = arg;

        (void)errstr;
        r->done++;
        r->err = err;
}

static const struct eb_source_cfg *acme(void)
{
        static struct eb_source_cfg src;

        src.name = (char *)"acme";
        return &src;
}

static void test_commit_and_restore(void)
{
        char err[512];
        struct eb_tresult a = {0, 0}, b = {0, 0};
        struct eb_kafka_stats ks;
        struct eb_state_restore_stats st;
        eb_pipeline_t *pl, *pl2;
        json_t *cp = json_pack("{s:i}", "wm", 42), *cps = json_object();

        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        EB_CHECK_INT(eb_pipeline_transactional(pl), 1);
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("e1"), 1, cp,
                                       eb_tresult_done, &a) == 0);
        /* the same event again (a webhook racing a poll) */
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("e1"), 1, NULL,
                                       eb_tresult_done, &b) == 0);
        EB_CHECK_INT(a.done, 0); /* never inside publish */
        EB_CHECK_INT(eb_pipeline_pending(pl), 2);
        eb_tresult_wait(base, &a, 20000);
        eb_tresult_wait(base, &b, 20000);
        EB_CHECK(a.done == 1 && a.err == 0);
        EB_CHECK(b.done == 1 && b.err == 0);
        EB_CHECK_INT(eb_pipeline_pending(pl), 0);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->published, 1);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->duplicates, 1);
        EB_CHECK(json_equal(eb_pipeline_checkpoint(pl, "acme"), cp));
        eb_kafka_get_stats(k, &ks);
        EB_CHECK(ks.txn_committed >= 1);
        EB_CHECK_INT(committed_events("e1"), 1);

        /* a new process: ids and checkpoint come back from the topics */
        pl2 = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl2 != NULL);
        EB_REQUIRE(eb_pipeline_restore(pl2, eb_kafka_bootstrap(k), cps, &st,
                                       err, sizeof(err)) == 0);
        EB_CHECK(json_equal(json_object_get(cps, "acme"), cp));
        EB_CHECK(json_equal(eb_pipeline_checkpoint(pl2, "acme"), cp));
        EB_CHECK(st.ids >= 1);
        memset(&a, 0, sizeof(a));
        EB_REQUIRE(eb_pipeline_publish(pl2, acme(), one_event("e1"), 1, NULL,
                                       eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 5000);
        EB_CHECK(a.done == 1 && a.err == 0);
        EB_CHECK_INT(eb_pipeline_stats(pl2, "acme")->duplicates, 1);
        EB_CHECK_INT(eb_pipeline_stats(pl2, "acme")->published, 0);
        eb_pipeline_free(pl2);
        eb_pipeline_free(pl);
        json_decref(cps);
        json_decref(cp);
}

static void test_abortable_commit_is_redone(void)
{
        char err[512];
        struct eb_tresult a = {0, 0};
        struct eb_kafka_stats before, after;
        eb_pipeline_t *pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));

        EB_REQUIRE(pl != NULL);
        eb_kafka_get_stats(k, &before);
        /* EndTxn UNKNOWN_PRODUCER_ID: abortable (docs/delivery.md) */
        rd_kafka_mock_push_request_errors(
                eb_kafka_mock_cluster(k), 26, 1,
                RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID);
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("e2"), 1, NULL,
                                       eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 30000);
        EB_CHECK(a.done == 1 && a.err == 0);
        eb_kafka_get_stats(k, &after);
        EB_CHECK(after.txn_aborted >= before.txn_aborted + 1);
        EB_CHECK(after.txn_committed >= before.txn_committed + 1);
        EB_CHECK_INT(eb_pipeline_stats(pl, "acme")->published, 1);
        EB_CHECK_INT(eb_pipeline_pending(pl), 0);
        eb_pipeline_free(pl);
}

/*
 * A second instance with the same transactional.id starts (a replica
 * started by mistake, or the zombie's replacement): the first one's next
 * transaction is fenced by the broker, its pending publish fails and is
 * never visible, later publishes are refused.
 */
static void test_fenced_by_second_instance(void)
{
        char err[512];
        struct eb_tresult a = {0, 0}, init = {0, 0};
        struct eb_event **evts;
        eb_pipeline_t *pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        eb_kafka_t *k2;

        EB_REQUIRE(pl != NULL);
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("e3"), 1, NULL,
                                       eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 20000);
        EB_CHECK(a.done == 1 && a.err == 0);

        k2 = eb_kafka_new_ex(base, cfg, EB_KAFKA_NEW_F_TRANSACTIONS, err,
                             sizeof(err));
        if (!k2)
                eb_pipeline_free(pl);
        EB_REQUIRE(k2 != NULL);
        EB_CHECK_INT(eb_kafka_txn_init(k2, on_txn, &init), 0);
        eb_tresult_wait(base, &init, 30000);
        EB_CHECK(init.done == 1 && init.err == 0);

        memset(&a, 0, sizeof(a));
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("e4"), 1, NULL,
                                       eb_tresult_done, &a) == 0);
        eb_tresult_wait(base, &a, 30000);
        EB_CHECK(a.done == 1 && a.err != 0);
        EB_CHECK_INT(eb_pipeline_pending(pl), 0);
        EB_CHECK_INT(eb_kafka_txn_state(k), EB_KAFKA_TXN_FATAL);
        evts = one_event("e5");
        EB_CHECK_INT(eb_pipeline_publish(pl, acme(), evts, 1, NULL,
                                         eb_tresult_done, &a),
                     -EIO);
        EB_CHECK_INT(committed_events("e3"), 1);
        EB_CHECK_INT(committed_events("e4"), 0);
        EB_CHECK_INT(committed_events("e5"), 0);
        eb_pipeline_free(pl);
        eb_kafka_free(k2);
}

/* Idle polls: a checkpoint equal to the committed one writes nothing, and
 * one that moves without events (Kommo's clock-driven watermark) is
 * persisted at most every 30 s; with events it always goes with them. */
static uint64_t committed_txns(void)
{
        struct eb_kafka_stats ks;

        eb_kafka_get_stats(k, &ks);
        return ks.txn_committed;
}

static void test_idle_checkpoints(void)
{
        char err[512];
        struct eb_tresult r;
        eb_pipeline_t *pl;
        json_t *cp1 = json_pack("{s:i}", "wm", 100);
        json_t *cp2 = json_pack("{s:i}", "wm", 101);
        json_t *cp3 = json_pack("{s:i}", "wm", 102);
        uint64_t before;

        pl = eb_pipeline_new(base, cfg, k, err, sizeof(err));
        EB_REQUIRE(pl != NULL);
        /* the first checkpoint of a source is written */
        memset(&r, 0, sizeof(r));
        before = committed_txns();
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), NULL, 0, cp1,
                                       eb_tresult_done, &r) == 0);
        eb_tresult_wait(base, &r, 20000);
        EB_CHECK(r.done == 1 && r.err == 0);
        EB_CHECK_INT(committed_txns() - before, 1);
        EB_CHECK(json_equal(eb_pipeline_checkpoint(pl, "acme"), cp1));
        /* the same checkpoint again: settled, no transaction */
        memset(&r, 0, sizeof(r));
        before = committed_txns();
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), NULL, 0, cp1,
                                       eb_tresult_done, &r) == 0);
        eb_tresult_wait(base, &r, 5000);
        EB_CHECK(r.done == 1 && r.err == 0);
        EB_CHECK_INT(committed_txns() - before, 0);
        /* a moved checkpoint without events, right after: not yet */
        memset(&r, 0, sizeof(r));
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), NULL, 0, cp2,
                                       eb_tresult_done, &r) == 0);
        eb_tresult_wait(base, &r, 5000);
        EB_CHECK(r.done == 1 && r.err == 0);
        EB_CHECK_INT(committed_txns() - before, 0);
        EB_CHECK(json_equal(eb_pipeline_checkpoint(pl, "acme"), cp1));
        /* with an event it is written at once, with the event */
        memset(&r, 0, sizeof(r));
        EB_REQUIRE(eb_pipeline_publish(pl, acme(), one_event("idle-1"), 1, cp3,
                                       eb_tresult_done, &r) == 0);
        eb_tresult_wait(base, &r, 20000);
        EB_CHECK(r.done == 1 && r.err == 0);
        EB_CHECK_INT(committed_txns() - before, 1);
        EB_CHECK(json_equal(eb_pipeline_checkpoint(pl, "acme"), cp3));
        eb_pipeline_free(pl);
        json_decref(cp1);
        json_decref(cp2);
        json_decref(cp3);
}

/* A config and an initialised transactional producer: on the real broker
 * (@p embedded 0) or on a fresh embedded mock cluster. */
static void setup_on(int embedded)
{
        char err[1024];
        struct eb_tresult init = {0, 0};

        eb_kafka_free(k);
        eb_config_free(cfg);
        k = NULL;
        cfg = eb_config_new_default();
        cfg->dedupe_capacity = 1000;
        if (!embedded) {
                EB_REQUIRE(kafka != NULL);
                cfg->embedded = 0;
                cfg->brokers = eb_xstrdup(eb_tkafka_bootstrap(kafka));
        }
        k = eb_kafka_new_ex(base, cfg, EB_KAFKA_NEW_F_TRANSACTIONS, err,
                            sizeof(err));
        EB_REQUIRE(k != NULL);
        EB_REQUIRE(eb_state_ensure_topics(eb_kafka_rk(k),
                                          eb_kafka_mock_cluster(k), cfg, 1,
                                          30000, err, sizeof(err)) == 0);
        EB_REQUIRE(eb_kafka_txn_init(k, on_txn, &init) == 0);
        eb_tresult_wait(base, &init, 20000);
        EB_REQUIRE(init.done == 1 && init.err == 0);
}

static void setup(void)
{
        setup_on(0);
}

static void setup_mock(void)
{
        setup_on(1);
}

int main(void)
{
        base = event_base_new();
        kafka = eb_tkafka_start(1, NULL);
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        EB_RUN(setup);
        if (k && eb_kafka_txn_state(k) == EB_KAFKA_TXN_READY) {
                EB_RUN(test_commit_and_restore);
                EB_RUN(test_idle_checkpoints);
                EB_RUN(test_fenced_by_second_instance);
        }
        EB_RUN(setup_mock);
        if (k && eb_kafka_txn_state(k) == EB_KAFKA_TXN_READY)
                EB_RUN(test_abortable_commit_is_redone);
        eb_kafka_free(k);
        eb_config_free(cfg);
        event_base_free(base);
        eb_tkafka_stop(kafka);
        return eb_test_summary();
}
