/*
 * Integration tests for eb_kafka's transactional API, on a real event_base.
 *
 * On a real Apache Kafka broker (tests/kafka/broker through eb_tkafka, one
 * node started once for the whole binary; each case has its own
 * transactional.id and topics): init, commit of many messages in one
 * transaction, the loop staying live while a commit waits on the broker,
 * an open transaction aborted, teardown with a transaction open or
 * committing, zombie fencing by a second producer with the same
 * transactional.id, the broker paused (SIGSTOP) during a commit, shorter
 * and longer than message.timeout.ms, and the broker killed (SIGKILL) and
 * restarted with a transaction open. What a read_committed
 * consumer reads is asserted each time: everything committed, nothing of
 * an aborted or fenced transaction.
 *
 * On librdkafka 2.0.2's mock cluster, only what a real broker cannot be
 * made to do: a varying or 200 ms broker round trip (the commit-resume
 * crash regression; an abort with records both in flight and queued), errors
 * injected on EndTxn / AddPartitionsToTxn / Produce (abortable ones handled
 * by abort + redo; PRODUCER_FENCED / INVALID_PRODUCER_EPOCH on each
 * request), and test_mock_does_not_fence, which pins that the mock never
 * fences a second producer.
 */
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"
#include "eb_util.h"

#include <errno.h>
#include <event2/event.h>

/* The real broker, shared by the cases (NULL if it could not start). */
static eb_tkafka_t *kafka;

/* The running case's two topics: "txn.<transactional.id>.a" and ".b". */
static char topic_a[128], topic_b[128];

/* ApiKeys (Kafka protocol) used for fault injection. */
#define API_PRODUCE        0
#define API_ADD_PARTITIONS 24
#define API_END_TXN        26

/* ---- shared test state ------------------------------------------------ */

struct op {
        int fired; /* must end at exactly 1 */
        int err;
        char errstr[512];
        int drs_at_cb; /* delivery reports seen when the callback ran */
};

struct ctx {
        eb_kafka_t *k;
        int drs;     /* delivery reports */
        int dr_ok;   /* ... successful */
        int dr_fail; /* ... failed */
        int dr_canceled;
        int dr_not_persisted;
        int fatal;
        char fatal_reason[768];
};

static struct ctx *cur; /* the test running now (callbacks) */

static void on_dr(void *opaque, int err, const char *errstr)
{
        (void)opaque;
        (void)errstr;
        cur->drs++;
        if (err) {
                cur->dr_fail++;
                if (err == -ECANCELED)
                        cur->dr_canceled++;
                if (eb_kafka_dr_persisted(cur->k) == EB_KAFKA_NOT_PERSISTED)
                        cur->dr_not_persisted++;
        } else {
                cur->dr_ok++;
        }
}

static void on_op(void *opaque, int err, const char *errstr)
{
        struct op *o = opaque;

        o->fired++;
        o->err = err;
        o->drs_at_cb = cur->drs;
        snprintf(o->errstr, sizeof(o->errstr), "%s", errstr ? errstr : "");
}

static void on_fatal(void *opaque, const char *reason)
{
        struct ctx *c = opaque;

        c->fatal++;
        snprintf(c->fatal_reason, sizeof(c->fatal_reason), "%s", reason);
}

/* A config for the real broker (the mock with cfg_mock()). */
static void cfg_init(struct eb_config *cfg, const char *txn_id)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->brokers = kafka ? (char *)eb_tkafka_bootstrap(kafka) : NULL;
        snprintf(topic_a, sizeof(topic_a), "txn.%s.a",
                 txn_id ? txn_id : "none");
        snprintf(topic_b, sizeof(topic_b), "txn.%s.b",
                 txn_id ? txn_id : "none");
        cfg->queue_max_messages = 100000;
        cfg->drain_timeout_ms = EB_T_TMOUT(5000);
        cfg->delivery = EB_DELIVERY_EXACTLY_ONCE;
        cfg->transactional_id = (char *)txn_id;
}

/* The same on a fresh embedded mock cluster of its own. */
static void cfg_mock(struct eb_config *cfg, const char *txn_id)
{
        cfg_init(cfg, txn_id);
        cfg->brokers = NULL;
        cfg->embedded = 1;
        cfg->embedded_brokers = 1;
}

/* A writable key/value pair for struct eb_kv (-Wwrite-strings). */
#define KV(k, v)                                                               \
        {                                                                      \
                (char[]){k}, (char[])                                          \
                {                                                              \
                        v                                                      \
                }                                                              \
        }

/* Short reconnect back-off: outage tests recover in a second. */
static struct eb_kv fast_props[] = {
        KV("reconnect.backoff.ms", "50"),
        KV("reconnect.backoff.max.ms", "300"),
};

/* Run the loop until @p *counter >= @p target or the time is up. */
static void run_for(struct event_base *base, int ms)
{
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
}

static void env_set(struct eb_envelope *env, const char *topic, int i)
{
        memset(env, 0, sizeof(*env));
        env->topic = eb_xstrdup(topic);
        env->key = eb_xasprintf("key-%d", i % 7);
        env->key_len = strlen(env->key);
        env->value = eb_xasprintf("{\"n\":%d}", i);
        env->value_len = strlen(env->value);
}

/* Produce @p n messages alternating over two topics. */
static int produce_n(eb_kafka_t *k, int n, int base_i)
{
        int i, rc;

        for (i = 0; i < n; i++) {
                struct eb_envelope env;

                env_set(&env, (i % 2) ? topic_b : topic_a, base_i + i);
                rc = eb_kafka_produce(k, &env, on_dr, NULL);
                eb_envelope_fini(&env);
                if (rc)
                        return rc;
        }
        return 0;
}

/* A transactional handle, initialised. On the mock, the topics are made
 * first with two partitions; the real broker creates them on first use. */
static eb_kafka_t *start(struct event_base *base, struct eb_config *cfg,
                         struct ctx *c)
{
        char errstr[512];
        struct op init;

        memset(c, 0, sizeof(*c));
        memset(&init, 0, sizeof(init));
        cur = c;
        c->k = eb_kafka_new_ex(base, cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                               sizeof(errstr));
        if (!c->k) {
                fprintf(stderr, "  eb_kafka_new_ex: %s\n", errstr);
                return NULL;
        }
        eb_kafka_set_fatal_cb(c->k, on_fatal, c);
        if ((cfg->embedded &&
             (eb_kmock_create_topic(eb_kafka_mock_cluster(c->k), topic_a, 2) ||
              eb_kmock_create_topic(eb_kafka_mock_cluster(c->k), topic_b,
                                    2))) ||
            eb_kafka_txn_init(c->k, on_op, &init) != 0 ||
            eb_test_run_until(base, &init.fired, 1, 20000) != 0 ||
            init.err != 0) {
                fprintf(stderr, "  start: init failed: %d %s\n", init.err,
                        init.errstr);
                eb_kafka_free(c->k);
                c->k = NULL;
                return NULL;
        }
        return c->k;
}

/* One batch: begin, produce @p n, commit; returns the commit result. */
static int batch(struct event_base *base, eb_kafka_t *k, int n, int base_i,
                 struct op *commit)
{
        memset(commit, 0, sizeof(*commit));
        if (eb_kafka_txn_begin(k) != 0)
                return -999;
        if (produce_n(k, n, base_i) != 0)
                return -998;
        if (eb_kafka_txn_commit(k, on_op, commit) != 0)
                return -997;
        if (eb_test_run_until(base, &commit->fired, 1, 30000) != 0)
                return -ETIMEDOUT;
        return commit->err;
}

static int abort_txn(struct event_base *base, eb_kafka_t *k)
{
        struct op o;

        memset(&o, 0, sizeof(o));
        if (eb_kafka_txn_abort(k, on_op, &o) != 0)
                return -997;
        if (eb_test_run_until(base, &o.fired, 1, 30000) != 0)
                return -ETIMEDOUT;
        return o.err;
}

/*
 * What a read_committed consumer reads of the running case's topics on the
 * real broker: returns the number of records (-1 if they could not be
 * read), and in *@p in_range those whose "n" is in [@p lo, @p hi).
 */
static long read_committed(int lo, int hi, long *in_range)
{
        const char *const topics[] = {topic_a, topic_b, NULL};
        struct eb_kmock_records recs;
        long total;
        size_t i;

        *in_range = 0;
        if (eb_kmock_consume_all(eb_tkafka_bootstrap(kafka), topics,
                                 EB_T_TMOUT(20000), &recs) != 0) {
                eb_kmock_records_free(&recs);
                return -1;
        }
        for (i = 0; i < recs.cnt; i++) {
                const char *v = recs.v[i].value;
                long n = -1;

                if (v && !strncmp(v, "{\"n\":", 5))
                        n = strtol(v + 5, NULL, 10);
                if (n >= lo && n < hi)
                        (*in_range)++;
        }
        total = (long)recs.cnt;
        eb_kmock_records_free(&recs);
        return total;
}

/* ---- configuration -------------------------------------------------------
 */

static void test_config(void)
{
        struct event_base *base = event_base_new();
        struct eb_kv bad[] = {KV("transactional.id", "sneaky")};
        struct eb_config cfg;
        struct op o;
        char errstr[512];
        eb_kafka_t *k;

        EB_REQUIRE(base != NULL);
        memset(&o, 0, sizeof(o));

        /* eb_kafka_new() keeps its idempotent producer, whatever the
         * delivery mode. */
        cfg_init(&cfg, "eb-test-cfg");
        k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        EB_REQUIRE(k != NULL);
        EB_CHECK_INT(eb_kafka_transactional(k), 0);
        EB_CHECK_INT(eb_kafka_txn_state(k), EB_KAFKA_TXN_NONE);
        EB_CHECK_INT(eb_kafka_txn_init(k, on_op, &o), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_begin(k), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_commit(k, on_op, &o), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_abort(k, on_op, &o), -EINVAL);
        eb_kafka_free(k);

        /* at-least-once: the flag changes nothing */
        cfg.delivery = EB_DELIVERY_AT_LEAST_ONCE;
        k = eb_kafka_new_ex(base, &cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                            sizeof(errstr));
        EB_REQUIRE(k != NULL);
        EB_CHECK_INT(eb_kafka_transactional(k), 0);
        eb_kafka_free(k);

        /* exactly-once without a transactional.id */
        cfg_init(&cfg, NULL);
        errstr[0] = '\0';
        k = eb_kafka_new_ex(base, &cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                            sizeof(errstr));
        EB_CHECK(k == NULL);
        EB_CHECK(strstr(errstr, "kafka.transactional_id") != NULL);
        eb_kafka_free(k);

        /* transactional.id through the pass-through is refused */
        cfg_init(&cfg, "eb-test-cfg");
        cfg.properties = bad;
        cfg.properties_cnt = 1;
        errstr[0] = '\0';
        k = eb_kafka_new_ex(base, &cfg, 0, errstr, sizeof(errstr));
        EB_CHECK(k == NULL);
        EB_CHECK(strstr(errstr, "kafka.properties.transactional.id") != NULL);
        eb_kafka_free(k);

        /* an explicit message.timeout.ms above transaction.timeout.ms is
         * librdkafka's error, reported with the property's path */
        {
                struct eb_kv big[] = {KV("message.timeout.ms", "300000")};

                cfg.properties = big;
                cfg.properties_cnt = 1;
                errstr[0] = '\0';
                k = eb_kafka_new_ex(base, &cfg, EB_KAFKA_NEW_F_TRANSACTIONS,
                                    errstr, sizeof(errstr));
                EB_CHECK(k == NULL);
                EB_CHECK(strstr(errstr, "transaction.timeout.ms") != NULL);
                eb_kafka_free(k);
        }
        event_base_free(base);
}

/* ---- init and commit ---------------------------------------------------- */

static void test_init_and_commit(void)
{
        const char *const topics[] = {topic_a, topic_b, NULL};
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_kmock_records recs;
        struct eb_envelope env;
        struct eb_config cfg;
        struct op init, commit, other;
        char errstr[512];
        struct ctx c;
        const int n = 300;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        memset(&c, 0, sizeof(c));
        memset(&init, 0, sizeof(init));
        memset(&commit, 0, sizeof(commit));
        memset(&other, 0, sizeof(other));
        cur = &c;
        cfg_init(&cfg, "eb-test-commit");
        c.k = eb_kafka_new_ex(base, &cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                              sizeof(errstr));
        EB_REQUIRE(c.k != NULL);
        eb_kafka_set_fatal_cb(c.k, on_fatal, &c);
        EB_CHECK_INT(eb_kafka_transactional(c.k), 1);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_INIT);
        EB_CHECK_STR(eb_kafka_txn_state_name(eb_kafka_txn_state(c.k)), "init");

        /* nothing works before init */
        env_set(&env, topic_a, 0);
        EB_CHECK_INT(eb_kafka_produce(c.k, &env, on_dr, NULL), -EIO);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_commit(c.k, on_op, &other), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_abort(c.k, on_op, &other), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_init(c.k, NULL, NULL), -EINVAL);

        EB_REQUIRE(eb_kafka_txn_init(c.k, on_op, &init) == 0);
        EB_CHECK_INT(init.fired, 0); /* never from inside the call */
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_INITIALIZING);
        EB_CHECK_INT(eb_kafka_txn_init(c.k, on_op, &other), -EBUSY);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EBUSY);
        EB_REQUIRE(eb_test_run_until(base, &init.fired, 1, 20000) == 0);
        EB_CHECK_INT(init.err, 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);
        EB_CHECK_INT(eb_kafka_txn_init(c.k, on_op, &other), -EINVAL);

        /* outside a transaction produce is refused */
        EB_CHECK_INT(eb_kafka_produce(c.k, &env, on_dr, NULL), -EIO);
        EB_CHECK_INT(eb_kafka_txn_commit(c.k, on_op, &other), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_abort(c.k, on_op, &other), -EINVAL);

        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_IN_TXN);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EINVAL);
        EB_CHECK_INT(produce_n(c.k, n, 0), 0);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(commit.fired, 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_COMMITTING);
        EB_CHECK_INT(eb_kafka_produce(c.k, &env, on_dr, NULL), -EIO);
        EB_CHECK_INT(eb_kafka_txn_commit(c.k, on_op, &other), -EBUSY);
        EB_CHECK_INT(eb_kafka_txn_abort(c.k, on_op, &other), -EBUSY);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EBUSY);
        EB_REQUIRE(eb_test_run_until(base, &commit.fired, 1, 30000) == 0);
        EB_CHECK_INT(commit.err, 0);
        /* every delivery report ran before the commit's callback */
        EB_CHECK_INT(commit.drs_at_cb, n);
        EB_CHECK_INT(c.dr_ok, n);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);

        /* a second transaction, and an empty one */
        EB_CHECK_INT(batch(base, c.k, 10, n, &commit), 0);
        EB_CHECK_INT(batch(base, c.k, 0, 0, &commit), 0);
        run_for(base, 50);
        EB_CHECK_INT(other.fired, 0);
        EB_CHECK_INT(commit.fired, 1);

        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.produced, n + 10);
        EB_CHECK_INT(st.delivered, n + 10);
        EB_CHECK_INT(st.txn_committed, 3);
        EB_CHECK_INT(st.txn_aborted, 0);
        EB_CHECK_INT(st.txn_commit_failed, 0);
        EB_CHECK(st.txn_last_commit_ms >= 0);
        EB_CHECK_INT(c.fatal, 0);

        EB_CHECK_INT(eb_kmock_consume_all(eb_kafka_bootstrap(c.k), topics,
                                          EB_T_TMOUT(20000), &recs),
                     0);
        EB_CHECK_INT(recs.cnt, n + 10);
        EB_CHECK_INT(eb_kmock_count(&recs, topic_a), (n + 10) / 2);
        eb_kmock_records_free(&recs);
        eb_envelope_fini(&env);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/* ---- the loop is not blocked --------------------------------------------- */

struct ticker {
        struct event *ev;
        eb_kafka_t *k;
        int ticks;            /* all ticks */
        int ticks_committing; /* ticks while a commit was running */
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        struct ticker *t = arg;

        (void)fd;
        (void)what;
        t->ticks++;
        if (eb_kafka_txn_state(t->k) == EB_KAFKA_TXN_COMMITTING)
                t->ticks_committing++;
}

/* The broker, paused (SIGSTOP) by a case, resumes (a timer's callback). */
struct updown {
        int up;
        int resumed; /* eb_tkafka_ctl()'s result */
};

static void on_broker_up(evutil_socket_t fd, short what, void *arg)
{
        struct updown *u = arg;

        (void)fd;
        (void)what;
        u->resumed = eb_tkafka_ctl(kafka, "resume", 0);
        u->up = 1;
}

/*
 * A commit that waits on the broker must not block the loop. Its records
 * delivered, the broker is paused (SIGSTOP) for a second while EndTxn is
 * on its way: a 10 ms timer must keep firing all that time. A commit that
 * blocked the loop would let it fire at most once in that state, since the
 * state goes from COMMITTING to READY inside one callback.
 */
static void test_loop_not_blocked(void)
{
        struct event_base *base = event_base_new();
        struct timeval tv = {0, 10 * 1000}, resume_tv = {1, 0};
        struct event *up_ev = NULL;
        struct eb_config cfg;
        struct updown u = {0, -1};
        struct ticker t;
        struct op commit;
        struct ctx c;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        memset(&t, 0, sizeof(t));
        cfg_init(&cfg, "eb-test-live");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        /* one quick transaction first, so metadata is warm */
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        t.k = c.k;
        t.ev = event_new(base, -1, EV_PERSIST, on_tick, &t);
        EB_REQUIRE(t.ev != NULL);
        event_add(t.ev, &tv);
        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 50, 100), 0);
        EB_CHECK_INT(eb_test_run_until(base, &c.dr_ok, 54, 20000), 0);
        EB_REQUIRE(eb_tkafka_ctl(kafka, "pause", 0) == 0);
        up_ev = evtimer_new(base, on_broker_up, &u);
        EB_REQUIRE(up_ev != NULL);
        evtimer_add(up_ev, &resume_tv);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &commit.fired, 1, 40000), 0);
        EB_CHECK_INT(commit.err, 0);
        EB_CHECK_INT(u.up, 1); /* it could not finish while paused */
        EB_CHECK_INT(u.resumed, 0);
        fprintf(stderr,
                "  info: %d ticks of a 10 ms timer during a commit with "
                "the broker paused for 1 s\n",
                t.ticks_committing);
        EB_CHECK(t.ticks_committing >= 2);
        event_free(t.ev);
        event_free(up_ev);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/*
 * Regression test for a librdkafka 2.0.2 crash (docs/delivery.md): commits
 * resumed with short timeouts from the loop made librdkafka assert
 * "CommittingTransaction -> AbortedNotAcked" within a few transactions
 * when the broker round trip varies. Many transactions, the round trip
 * switching between 0, 20 and 100 ms, must all commit.
 */
static void test_many_commits_varying_rtt(void)
{
        static const int rtts[] = {0, 20, 100};
        struct event_base *base = event_base_new();
        rd_kafka_mock_cluster_t *mc;
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct op commit;
        struct ctx c;
        int i, failed = 0;
        const int n = 45;

        EB_REQUIRE(base != NULL);
        cfg_mock(&cfg, "eb-test-many");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        mc = eb_kafka_mock_cluster(c.k);
        for (i = 0; i < n; i++) {
                rd_kafka_mock_broker_set_rtt(mc, 1, rtts[i % 3]);
                if (batch(base, c.k, 20, i * 20, &commit) != 0)
                        failed++;
        }
        rd_kafka_mock_broker_set_rtt(mc, 1, 0);
        EB_CHECK_INT(failed, 0);
        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.txn_committed, n);
        EB_CHECK_INT(c.dr_ok, n * 20);
        EB_CHECK_INT(c.fatal, 0);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/* ---- abortable errors ------------------------------------------------- */

/*
 * The caller's side of an abortable failure: abort, then redo the batch in
 * a new transaction, a bounded number of times. After an abortable Produce
 * error librdkafka 2.0.2 may fail the first redo once more
 * (OUT_OF_ORDER_SEQUENCE_NUMBER, "requires epoch bump"), so callers must
 * allow more than one redo. That failure may also land between two
 * produce() calls of the redo, which refuse the rest of the batch before
 * eb_kafka hears of it: the batch is then committed as it is, as the
 * pipeline does, and that commit fails with -ECANCELED.
 * @returns the number of commits that ended in -ECANCELED before one
 * succeeded, or -1.
 */
static int commit_with_redo(struct event_base *base, eb_kafka_t *k, int n,
                            int max_attempts)
{
        struct op commit;
        int failed = 0;
        int attempt;

        for (attempt = 0; attempt < max_attempts; attempt++) {
                int rc = batch(base, k, n, attempt * 1000, &commit);

                if (rc == 0)
                        return failed;
                if (rc == -998 && eb_kafka_txn_commit(k, on_op, &commit) == 0) {
                        rc = -ETIMEDOUT;
                        if (!eb_test_run_until(base, &commit.fired, 1, 30000))
                                rc = commit.err;
                }
                if (rc != -ECANCELED) {
                        fprintf(stderr, "  commit: unexpected %d %s\n", rc,
                                commit.errstr);
                        return -1;
                }
                failed++;
                if (eb_kafka_txn_state(k) != EB_KAFKA_TXN_ABORTABLE)
                        return -1;
                if (abort_txn(base, k) != 0)
                        return -1;
                if (eb_kafka_txn_state(k) != EB_KAFKA_TXN_READY)
                        return -1;
        }
        return -1;
}

/*
 * Inject @p err as the mock broker's answer to the next @p api request,
 * sent 3 s late: the batch under test is then wholly produced before the
 * transaction fails. With an immediate answer, a loaded machine could see
 * the transaction turn abortable (or fenced) between two produce() calls
 * of the batch, and the test would fail on that race, not on what it
 * checks.
 */
static void inject_late(eb_kafka_t *k, int16_t api, rd_kafka_resp_err_t err)
{
        rd_kafka_mock_broker_push_request_error_rtts(eb_kafka_mock_cluster(k),
                                                     1, api, 1, err, 3000);
}

static void check_abortable(struct ctx *cp, int16_t api,
                            rd_kafka_resp_err_t inject, int max_redo)
{
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_envelope env;
        struct eb_config cfg;
        struct op commit, o;
        struct ctx c;
        int rc;

        EB_REQUIRE(base != NULL);
        memset(&o, 0, sizeof(o));
        cfg_mock(&cfg, "eb-test-abortable");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        inject_late(c.k, api, inject);
        EB_CHECK_INT(batch(base, c.k, 20, 100, &commit), -ECANCELED);
        fprintf(stderr, "  info: %s on ApiKey %d -> commit %d: %s\n",
                rd_kafka_err2name(inject), (int)api, commit.err, commit.errstr);
        EB_CHECK_INT(commit.fired, 1);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_ABORTABLE);
        EB_CHECK_INT(c.fatal, 0);
        /* in ABORTABLE only abort is allowed */
        env_set(&env, topic_a, 0);
        EB_CHECK_INT(eb_kafka_produce(c.k, &env, on_dr, NULL), -EIO);
        eb_envelope_fini(&env);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EINVAL);
        EB_CHECK_INT(eb_kafka_txn_commit(c.k, on_op, &o), -EINVAL);
        EB_CHECK_INT(abort_txn(base, c.k), 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);

        rc = commit_with_redo(base, c.k, 20, max_redo);
        EB_CHECK(rc >= 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);
        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.txn_committed, 2);
        EB_CHECK_INT(st.txn_commit_failed, 1 + (rc > 0 ? rc : 0));
        EB_CHECK_INT(st.txn_aborted, 1 + (rc > 0 ? rc : 0));
        EB_CHECK_INT(c.fatal, 0);
        EB_CHECK_INT(o.fired, 0);
        eb_kafka_free(c.k);
        event_base_free(base);
        *cp = c;
        cur = cp;
}

/* EndTxn refused: every message was delivered (and reported so), yet the
 * transaction is aborted: delivery reports are not durability. */
static void test_abortable_end_txn(void)
{
        struct ctx c;

        memset(&c, 0, sizeof(c));
        check_abortable(&c, API_END_TXN, RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
                        1);
        /* 4 + 20 (aborted anyway) + 20 (redo) delivered */
        EB_CHECK_INT(c.dr_ok, 44);
        EB_CHECK_INT(c.dr_fail, 0);
}

static void test_abortable_add_partitions(void)
{
        struct ctx c;

        memset(&c, 0, sizeof(c));
        check_abortable(&c, API_ADD_PARTITIONS,
                        RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED, 1);
        /* its messages were purged, known not to be written */
        EB_CHECK_INT(c.dr_canceled, 20);
        EB_CHECK_INT(c.dr_not_persisted, 20);
        EB_CHECK_INT(c.dr_ok, 24);
}

static void test_abortable_produce(void)
{
        struct ctx c;

        memset(&c, 0, sizeof(c));
        check_abortable(&c, API_PRODUCE, RD_KAFKA_RESP_ERR_MSG_SIZE_TOO_LARGE,
                        3);
        /* one ProduceRequest (one partition) failed, and with it the
         * transaction; the redo's 20 were delivered */
        EB_CHECK(c.dr_fail >= 1);
        EB_CHECK(c.dr_ok >= 4 + 20);
}

/* Abort an open transaction with messages queued and in flight (a 200 ms
 * round trip, mock only): every delivery report runs before the abort's
 * callback (they are successes: delivered, yet aborted), then a new
 * transaction commits. test_aborted_txn_invisible reads the outcome. */
static void test_abort_open_txn(void)
{
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct op commit, ab;
        struct ctx c;

        EB_REQUIRE(base != NULL);
        memset(&ab, 0, sizeof(ab));
        cfg_mock(&cfg, "eb-test-abort");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);
        rd_kafka_mock_broker_set_rtt(eb_kafka_mock_cluster(c.k), 1, 200);
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 50, 100), 0);
        run_for(base, 250); /* some in flight, maybe some acknowledged */
        EB_CHECK_INT(produce_n(c.k, 50, 200), 0); /* these still queued */
        EB_REQUIRE(eb_kafka_txn_abort(c.k, on_op, &ab) == 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_ABORTING);
        EB_CHECK_INT(ab.fired, 0);
        EB_CHECK_INT(eb_test_run_until(base, &ab.fired, 1, 30000), 0);
        EB_CHECK_INT(ab.err, 0);
        EB_CHECK_INT(ab.drs_at_cb, 4 + 100);
        EB_CHECK_INT(c.dr_ok, 4 + 100);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);
        rd_kafka_mock_broker_set_rtt(eb_kafka_mock_cluster(c.k), 1, 0);
        EB_CHECK_INT(batch(base, c.k, 10, 300, &commit), 0);
        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.txn_aborted, 1);
        EB_CHECK_INT(st.txn_committed, 2);
        EB_CHECK_INT(c.fatal, 0);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/*
 * On the real broker: records written by a transaction that is then
 * aborted (50 acknowledged by the broker, 50 more maybe still queued) are
 * never seen by a read_committed consumer; the transactions around it are.
 */
static void test_aborted_txn_invisible(void)
{
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct op commit, ab;
        struct ctx c;
        long total, aborted = 0, later = 0;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        memset(&ab, 0, sizeof(ab));
        cfg_init(&cfg, "eb-test-abort-real");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 50, 100), 0);
        /* in the partition logs, acknowledged */
        EB_CHECK_INT(eb_test_run_until(base, &c.dr_ok, 54, 20000), 0);
        EB_CHECK_INT(produce_n(c.k, 50, 200), 0);
        EB_REQUIRE(eb_kafka_txn_abort(c.k, on_op, &ab) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &ab.fired, 1, 30000), 0);
        EB_CHECK_INT(ab.err, 0);
        EB_CHECK_INT(ab.drs_at_cb, 4 + 100);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);
        EB_CHECK_INT(batch(base, c.k, 10, 300, &commit), 0);
        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.txn_aborted, 1);
        EB_CHECK_INT(st.txn_committed, 2);
        EB_CHECK_INT(c.fatal, 0);

        total = read_committed(100, 300, &aborted);
        EB_CHECK_INT(total, 4 + 10);
        EB_CHECK_INT(aborted, 0);
        EB_CHECK_INT(read_committed(300, 310, &later), 14);
        EB_CHECK_INT(later, 10);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/* ---- fencing ------------------------------------------------------------ */

/*
 * What a real broker answers a producer whose transactional.id has been
 * taken over by a newer instance (init_transactions bumped the epoch):
 * PRODUCER_FENCED (Kafka >= 2.7) or INVALID_PRODUCER_EPOCH on its next
 * AddPartitionsToTxn, Produce or EndTxn. librdkafka turns each into the
 * fatal _FENCED error.
 */
static void check_fenced(int16_t api, rd_kafka_resp_err_t inject)
{
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_envelope env;
        struct eb_config cfg;
        struct op commit, o;
        struct ctx c;

        EB_REQUIRE(base != NULL);
        memset(&o, 0, sizeof(o));
        cfg_mock(&cfg, "eb-test-fence");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        inject_late(c.k, api, inject);
        EB_CHECK_INT(batch(base, c.k, 10, 100, &commit), -EPERM);
        EB_CHECK_INT(commit.fired, 1);
        EB_CHECK(strstr(commit.errstr, "fenced: another evbridge with "
                                       "transactional.id=eb-test-fence took "
                                       "over") != NULL);
        EB_CHECK_INT(c.fatal, 1);
        EB_CHECK(strstr(c.fatal_reason, "fenced: another evbridge with "
                                        "transactional.id=eb-test-fence took "
                                        "over") != NULL);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_FATAL);
        EB_CHECK_STR(eb_kafka_txn_state_name(EB_KAFKA_TXN_FATAL), "fatal");
        /* nothing works any more */
        env_set(&env, topic_a, 0);
        EB_CHECK_INT(eb_kafka_produce(c.k, &env, on_dr, NULL), -EIO);
        eb_envelope_fini(&env);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EIO);
        EB_CHECK_INT(eb_kafka_txn_abort(c.k, on_op, &o), -EIO);
        EB_CHECK_INT(eb_kafka_txn_commit(c.k, on_op, &o), -EIO);
        run_for(base, 100);
        EB_CHECK_INT(c.fatal, 1); /* once */
        eb_kafka_get_stats(c.k, &st);
        EB_CHECK_INT(st.txn_committed, 1);
        EB_CHECK_INT(st.txn_commit_failed, 1);
        eb_kafka_free(c.k);
        EB_CHECK_INT(o.fired, 0);
        event_base_free(base);
}

static void test_fenced_end_txn(void)
{
        check_fenced(API_END_TXN, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
}

static void test_fenced_add_partitions(void)
{
        check_fenced(API_ADD_PARTITIONS, RD_KAFKA_RESP_ERR_PRODUCER_FENCED);
}

static void test_fenced_produce_old_epoch(void)
{
        check_fenced(API_PRODUCE, RD_KAFKA_RESP_ERR_INVALID_PRODUCER_EPOCH);
}

/*
 * Pins a limitation of librdkafka 2.0.2's mock cluster: a second producer
 * that initialises the same transactional.id does NOT fence the first (the
 * mock keeps no producer epochs), so the first still commits. If this
 * starts failing after a librdkafka upgrade, the mock has learnt fencing:
 * turn this into a real fencing test and update docs/delivery.md.
 */
static void test_mock_does_not_fence(void)
{
        struct event_base *base = event_base_new();
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_error_t *error;
        rd_kafka_t *rk2 = NULL;
        struct eb_config cfg;
        struct op commit;
        char errstr[512];
        struct ctx c;

        EB_REQUIRE(base != NULL);
        cfg_mock(&cfg, "eb-test-fence-real");
        if (!start(base, &cfg, &c)) {
                rd_kafka_conf_destroy(conf);
                EB_REQUIRE(0);
        }
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        EB_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                                   eb_kafka_bootstrap(c.k), errstr,
                                   sizeof(errstr)) == RD_KAFKA_CONF_OK);
        EB_CHECK(rd_kafka_conf_set(conf, "transactional.id",
                                   "eb-test-fence-real", errstr,
                                   sizeof(errstr)) == RD_KAFKA_CONF_OK);
        rk2 = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk2)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(rk2 != NULL);
        error = rd_kafka_init_transactions(rk2, EB_T_TMOUT(20000));
        EB_CHECK(error == NULL);
        if (error)
                rd_kafka_error_destroy(error);

        /* On a real broker this would be -EPERM (see check_fenced). */
        EB_CHECK_INT(batch(base, c.k, 4, 10, &commit), 0);
        EB_CHECK_INT(c.fatal, 0);
        rd_kafka_destroy(rk2);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/*
 * Real zombie fencing: evbridge A has a transaction open (its records
 * acknowledged, in the log) when producer B initialises the same
 * transactional.id. The broker bumps the epoch and aborts A's transaction;
 * A's commit then fails fatally as fenced (-EPERM, the fatal callback,
 * nothing works any more), and a read_committed consumer sees A's first
 * committed transaction and B's, nothing of A's open one.
 */
static void test_zombie_fenced(void)
{
        static const char txn_id[] = "eb-test-zombie";
        struct event_base *base = event_base_new();
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        rd_kafka_error_t *error = NULL;
        rd_kafka_t *rk2 = NULL;
        struct eb_config cfg;
        struct op commit;
        char errstr[512];
        struct ctx c;
        long total, zombie = 0, newer = 0;
        int i;

        if (!base || !kafka)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, txn_id);
        if (!start(base, &cfg, &c)) {
                rd_kafka_conf_destroy(conf);
                EB_REQUIRE(0);
        }
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);
        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 10, 100), 0);
        EB_CHECK_INT(eb_test_run_until(base, &c.dr_ok, 14, 20000), 0);

        /* B takes over */
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        EB_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                                   eb_tkafka_bootstrap(kafka), errstr,
                                   sizeof(errstr)) == RD_KAFKA_CONF_OK);
        EB_CHECK(rd_kafka_conf_set(conf, "transactional.id", txn_id, errstr,
                                   sizeof(errstr)) == RD_KAFKA_CONF_OK);
        rk2 = rd_kafka_new(RD_KAFKA_PRODUCER, conf, errstr, sizeof(errstr));
        if (!rk2)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(rk2 != NULL);
        error = rd_kafka_init_transactions(rk2, EB_T_TMOUT(30000));
        if (!error)
                error = rd_kafka_begin_transaction(rk2);
        for (i = 0; !error && i < 3; i++) {
                char v[32];

                snprintf(v, sizeof(v), "{\"n\":%d}", 500 + i);
                if (rd_kafka_producev(rk2, RD_KAFKA_V_TOPIC(topic_a),
                                      RD_KAFKA_V_VALUE(v, strlen(v)),
                                      RD_KAFKA_V_MSGFLAGS(RD_KAFKA_MSG_F_COPY),
                                      RD_KAFKA_V_END) !=
                    RD_KAFKA_RESP_ERR_NO_ERROR)
                        break;
        }
        EB_CHECK_INT(i, 3);
        if (!error)
                error = rd_kafka_commit_transaction(rk2, EB_T_TMOUT(30000));
        if (error)
                fprintf(stderr, "  B: %s\n", rd_kafka_error_string(error));
        EB_CHECK(error == NULL);
        if (error)
                rd_kafka_error_destroy(error);

        /* A, the zombie, tries to commit */
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &commit.fired, 1, 30000), 0);
        fprintf(stderr, "  info: the zombie's commit: %d %s\n", commit.err,
                commit.errstr);
        EB_CHECK_INT(commit.err, -EPERM);
        EB_CHECK(strstr(commit.errstr, "fenced: another evbridge with "
                                       "transactional.id=eb-test-zombie took "
                                       "over") != NULL);
        EB_CHECK_INT(c.fatal, 1);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_FATAL);
        EB_CHECK_INT(eb_kafka_txn_begin(c.k), -EIO);

        total = read_committed(100, 110, &zombie);
        EB_CHECK_INT(total, 4 + 3);
        EB_CHECK_INT(zombie, 0);
        EB_CHECK_INT(read_committed(500, 503, &newer), 7);
        EB_CHECK_INT(newer, 3);
        rd_kafka_destroy(rk2);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/* ---- broker outage during a commit ------------------------------------- */

/*
 * Outage shorter than message.timeout.ms: the messages were delivered, the
 * broker stops answering (SIGSTOP) before EndTxn; the commit just takes
 * longer (librdkafka waits and retries by itself) and succeeds.
 */
static void test_broker_down_short(void)
{
        struct event_base *base = event_base_new();
        struct timeval tv = {1, 500 * 1000};
        struct event *up_ev = NULL;
        struct eb_config cfg;
        struct updown u;
        struct op commit;
        struct ctx c;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg_init(&cfg, "eb-test-down");
        cfg.properties = fast_props;
        cfg.properties_cnt = 2;
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 20, 100), 0);
        EB_REQUIRE(eb_test_run_until(base, &c.dr_ok, 24, 20000) == 0);
        u.up = 0;
        u.resumed = -1;
        EB_REQUIRE(eb_tkafka_ctl(kafka, "pause", 0) == 0);
        up_ev = evtimer_new(base, on_broker_up, &u);
        EB_REQUIRE(up_ev != NULL);
        evtimer_add(up_ev, &tv);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &commit.fired, 1, 40000), 0);
        EB_CHECK_INT(u.up, 1); /* it could not finish while down */
        EB_CHECK_INT(u.resumed, 0);
        EB_CHECK_INT(commit.err, 0);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_READY);
        event_free(up_ev);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/*
 * Outage longer than message.timeout.ms before the messages got out (the
 * broker paused, SIGSTOP): they fail (-ETIMEDOUT), the commit ends
 * abortable (-ECANCELED), abort succeeds once the broker answers again,
 * and the redo commits. Nothing of the failed transaction is visible.
 */
static void test_broker_down_long(void)
{
        struct event_base *base = event_base_new();
        struct timeval tv = {3, 0};
        struct eb_kv props[] = {
                KV("reconnect.backoff.ms", "50"),
                KV("reconnect.backoff.max.ms", "300"),
                KV("message.timeout.ms", "1500"),
        };
        struct event *up_ev = NULL;
        struct eb_config cfg;
        struct updown u;
        struct op commit;
        struct ctx c;
        int rc;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg_init(&cfg, "eb-test-down-long");
        cfg.properties = props;
        cfg.properties_cnt = 3;
        /* made first: with message.timeout.ms=1500 the first batch must
         * not wait for the broker to auto-create them */
        EB_REQUIRE(eb_tkafka_create_topic(eb_tkafka_bootstrap(kafka), topic_a,
                                          2, NULL) == 0);
        EB_REQUIRE(eb_tkafka_create_topic(eb_tkafka_bootstrap(kafka), topic_b,
                                          2, NULL) == 0);
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        u.up = 0;
        u.resumed = -1;
        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_REQUIRE(eb_tkafka_ctl(kafka, "pause", 0) == 0);
        EB_CHECK_INT(produce_n(c.k, 20, 100), 0);
        up_ev = evtimer_new(base, on_broker_up, &u);
        EB_REQUIRE(up_ev != NULL);
        evtimer_add(up_ev, &tv);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &commit.fired, 1, 40000), 0);
        EB_CHECK_INT(commit.err, -ECANCELED);
        EB_CHECK_INT(c.dr_fail, 20);
        EB_CHECK_INT(eb_kafka_txn_state(c.k), EB_KAFKA_TXN_ABORTABLE);
        rc = abort_txn(base, c.k);
        if (rc != 0 && eb_kafka_txn_state(c.k) == EB_KAFKA_TXN_FATAL) {
                /* librdkafka 2.0.2 may fail itself here: after the
                 * timeouts both its idempotence layer and the abort ask
                 * the coordinator for a bumped epoch, and the broker
                 * refuses the second (on the mock about one run in ten
                 * under make asan as an old epoch; on Apache Kafka 4.1
                 * as INVALID_TXN_STATE on the abort's EndTxn, most
                 * runs). A fatal error: evbridge stops on it and its
                 * restart carries on from the committed state. Then
                 * nothing of the failed transaction may be delivered,
                 * the producer must refuse new work, and a restarted
                 * one (same transactional.id) commits the redo. */
                fprintf(stderr, "  (librdkafka failed itself after the "
                                "timeouts: the fatal path)\n");
                EB_CHECK_INT(c.dr_ok, 4);
                EB_CHECK(eb_kafka_txn_begin(c.k) != 0);
                EB_CHECK_INT(eb_test_run_until(base, &u.up, 1, 20000), 0);
                eb_kafka_free(c.k);
                if (start(base, &cfg, &c) != NULL) {
                        EB_CHECK(commit_with_redo(base, c.k, 20, 3) >= 0);
                        EB_CHECK_INT(c.dr_ok >= 20, 1);
                } else {
                        EB_CHECK(!"the restarted producer could not start");
                }
        } else {
                EB_CHECK_INT(rc, 0);
                rc = eb_test_run_until(base, &u.up, 1, 20000);
                EB_CHECK_INT(rc, 0);
                EB_CHECK(commit_with_redo(base, c.k, 20, 3) >= 0);
                EB_CHECK_INT(c.dr_ok >= 24, 1);
        }
        /* the broker answers again before the next case */
        EB_CHECK_INT(eb_test_run_until(base, &u.up, 1, 20000), 0);
        EB_CHECK_INT(u.resumed, 0);
        {
                long failed = 0;

                /* the first batch and one redo, nothing of the failed */
                EB_CHECK_INT(read_committed(100, 120, &failed), 4 + 20);
                EB_CHECK_INT(failed, 0);
        }
        event_free(up_ev);
        eb_kafka_free(c.k);
        event_base_free(base);
}

/*
 * The broker killed (SIGKILL) with a transaction open, its 20 records
 * acknowledged, and started again: the commit then either succeeds (the
 * coordinator recovered the transaction from its log) and a read_committed
 * consumer reads all 20, or fails and it reads none of them; never a part.
 * After a commit failure, the redo commits.
 */
static void test_broker_killed_mid_txn(void)
{
        struct event_base *base = event_base_new();
        struct eb_config cfg;
        struct op commit;
        struct ctx c;
        long total, txn = 0;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg_init(&cfg, "eb-test-killed");
        cfg.properties = fast_props;
        cfg.properties_cnt = 2;
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_CHECK_INT(batch(base, c.k, 4, 0, &commit), 0);

        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 20, 100), 0);
        EB_REQUIRE(eb_test_run_until(base, &c.dr_ok, 24, 20000) == 0);
        EB_REQUIRE(eb_tkafka_ctl(kafka, "kill", 1) == 0);
        EB_REQUIRE(eb_tkafka_ctl(kafka, "restart", 1) == 0);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &commit.fired, 1, 60000), 0);
        fprintf(stderr, "  info: commit after the broker's restart: %d %s\n",
                commit.err, commit.errstr);
        total = read_committed(100, 120, &txn);
        if (commit.err == 0) {
                EB_CHECK_INT(txn, 20);
                EB_CHECK_INT(total, 4 + 20);
        } else {
                EB_CHECK_INT(txn, 0);
                if (eb_kafka_txn_state(c.k) == EB_KAFKA_TXN_ABORTABLE)
                        EB_CHECK_INT(abort_txn(base, c.k), 0);
                if (eb_kafka_txn_state(c.k) != EB_KAFKA_TXN_READY) {
                        /* fatal: a restarted evbridge carries on */
                        eb_kafka_free(c.k);
                        EB_REQUIRE(start(base, &cfg, &c) != NULL);
                }
                EB_CHECK(commit_with_redo(base, c.k, 20, 3) >= 0);
                EB_CHECK_INT(read_committed(100, 120, &txn), 4 + 20);
                EB_CHECK_INT(txn, 0);
        }
        eb_kafka_free(c.k);
        event_base_free(base);
}

/* ---- teardown ------------------------------------------------------------ */

/* eb_kafka_free() with a transaction open aborts it; with a commit running
 * it finishes the commit and runs its callback. A read_committed consumer
 * sees the second transaction only. */
static void test_free_with_open_txn(void)
{
        struct event_base *base = event_base_new();
        struct eb_kafka_stats st;
        struct eb_config cfg;
        struct op commit;
        struct ctx c;
        eb_kafka_t *k;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "eb-test-free");
        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 10, 0), 0);
        eb_kafka_free(c.k); /* aborts: queued messages purged */
        EB_CHECK_INT(c.drs, 10);

        EB_REQUIRE(start(base, &cfg, &c) != NULL);
        memset(&commit, 0, sizeof(commit));
        EB_REQUIRE(eb_kafka_txn_begin(c.k) == 0);
        EB_CHECK_INT(produce_n(c.k, 10, 100), 0);
        EB_REQUIRE(eb_kafka_txn_commit(c.k, on_op, &commit) == 0);
        k = c.k;
        eb_kafka_get_stats(k, &st);
        EB_CHECK_INT(st.txn_committed, 0);
        eb_kafka_free(k); /* finishes the commit */
        EB_CHECK_INT(commit.fired, 1);
        EB_CHECK_INT(commit.err, 0);
        EB_CHECK_INT(c.dr_ok, 10);
        {
                long second = 0;

                EB_CHECK_INT(read_committed(100, 110, &second), 10);
                EB_CHECK_INT(second, 10);
        }
        event_base_free(base);
}

/* EB_TEST_ONLY=test_x runs one case (debugging). */
#define RUN(fn)                                                                \
        do {                                                                   \
                const char *only_ = getenv("EB_TEST_ONLY");                    \
                if (!only_ || !strcmp(only_, #fn))                             \
                        EB_RUN(fn);                                            \
        } while (0)

int main(void)
{
        int rc;

        eb_log_level = EB_LOG_WARN;
        kafka = eb_tkafka_start(1, NULL);
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        /* the real broker */
        RUN(test_config);
        RUN(test_init_and_commit);
        RUN(test_loop_not_blocked);
        RUN(test_aborted_txn_invisible);
        RUN(test_zombie_fenced);
        RUN(test_broker_down_short);
        RUN(test_broker_down_long);
        RUN(test_broker_killed_mid_txn);
        RUN(test_free_with_open_txn);
        /* the mock: round trips and injected errors */
        RUN(test_many_commits_varying_rtt);
        RUN(test_abortable_end_txn);
        RUN(test_abortable_add_partitions);
        RUN(test_abortable_produce);
        RUN(test_abort_open_txn);
        RUN(test_fenced_end_txn);
        RUN(test_fenced_add_partitions);
        RUN(test_fenced_produce_old_epoch);
        RUN(test_mock_does_not_fence);
        rc = eb_test_summary();
        eb_tkafka_stop(kafka);
        return rc;
}
