/*
 * Integration tests for eb_state on a real Apache Kafka broker
 * (tests/kafka/broker through eb_tkafka: one node for the whole binary,
 * started with --no-auto-create, so every state topic here exists because
 * eb_state_ensure_topics() created it through CreateTopics; each case has
 * its own state_prefix and transactional.id). Checked: the state topics'
 * partitions and configs as the broker describes them (DescribeConfigs),
 * the error when the broker does not answer (SIGSTOP), writing checkpoints
 * and seen ids in transactions through eb_kafka's transactional API
 * exactly as the pipeline does, restoring them into a fresh dedupe table
 * and checkpoint map (exact contents, latest checkpoint wins, an aborted
 * transaction never read, expiry, garbage, shards, a 100k-id restore with
 * its time reported), and a checkpoints topic that the broker's log
 * cleaner really compacted restoring the same checkpoints.
 *
 * On librdkafka 2.0.2's mock cluster (the embedded mode of `make run`),
 * only test_restore_skips_aborted_embedded: the mock ignores
 * read_committed, so records of an aborted transaction ARE read back there
 * and restore must drop them by their transaction stamps.
 */
#include "eb_dedupe.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_state.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"
#include "eb_util.h"

#include <errno.h>
#include <event2/event.h>
#include <unistd.h>

#define WINDOW_S (72 * 3600)

/* The real broker, shared by the cases (NULL if it could not start). */
static eb_tkafka_t *kafka;

/* The running case's state_prefix ("evbt-<case>") and transactional.id
 * ("<prefix>-main"), and its two state topics' names. */
static char prefix[64], txn_id[80], ck_topic[96], seen_topic[96];

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * 0x2545f4914f6cdd1dULL;
}

/* A config for the real broker, state_prefix "evbt-<name>". */
static void cfg_init(struct eb_config *cfg, const char *name)
{
        snprintf(prefix, sizeof(prefix), "evbt-%s", name);
        snprintf(txn_id, sizeof(txn_id), "%s-main", prefix);
        snprintf(ck_topic, sizeof(ck_topic), "%s.checkpoints", prefix);
        snprintf(seen_topic, sizeof(seen_topic), "%s.seen", prefix);
        memset(cfg, 0, sizeof(*cfg));
        cfg->brokers = kafka ? (char *)eb_tkafka_bootstrap(kafka) : NULL;
        cfg->queue_max_messages = 200000;
        cfg->drain_timeout_ms = EB_T_TMOUT(5000);
        cfg->delivery = EB_DELIVERY_EXACTLY_ONCE;
        cfg->transactional_id = txn_id;
        cfg->state_prefix = prefix;
        cfg->dedupe_window_ms = (int64_t)WINDOW_S * 1000;
        cfg->dedupe_capacity = 1000000;
}

/* The same on a fresh embedded mock cluster of its own. */
static void cfg_mock(struct eb_config *cfg, const char *name)
{
        cfg_init(cfg, name);
        cfg->brokers = NULL;
        cfg->embedded = 1;
        cfg->embedded_brokers = 1;
}

struct op {
        int fired;
        int err;
};

static void on_op(void *opaque, int err, const char *errstr)
{
        struct op *o = opaque;

        (void)errstr;
        o->fired++;
        o->err = err;
}

/* A transactional producer with the state topics created (through the
 * Admin API on the real broker) and transactions initialised. */
static eb_kafka_t *start(struct event_base *base, const struct eb_config *cfg,
                         int partitions_seen)
{
        char errstr[1024];
        struct op init = {0, 0};
        eb_kafka_t *k;

        k = eb_kafka_new_ex(base, cfg, EB_KAFKA_NEW_F_TRANSACTIONS, errstr,
                            sizeof(errstr));
        if (!k) {
                fprintf(stderr, "  eb_kafka_new_ex: %s\n", errstr);
                return NULL;
        }
        if (eb_state_ensure_topics(eb_kafka_rk(k), eb_kafka_mock_cluster(k),
                                   cfg, partitions_seen, EB_T_TMOUT(10000),
                                   errstr, sizeof(errstr)) != 0) {
                fprintf(stderr, "  ensure_topics: %s\n", errstr);
                eb_kafka_free(k);
                return NULL;
        }
        if (eb_kafka_txn_init(k, on_op, &init) != 0 ||
            eb_test_run_until(base, &init.fired, 1, 20000) != 0 || init.err) {
                fprintf(stderr, "  txn init failed\n");
                eb_kafka_free(k);
                return NULL;
        }
        return k;
}

/* ---- one transaction of state records ---------------------------------- */

struct ckp {
        const char *source;
        const char *value; /* JSON */
};

/*
 * Write one transaction: the seen records of @p n ids and the given
 * checkpoints, then commit (or abort when @p do_abort; the records are
 * flushed first so they are in the log either way).
 * @returns the commit/abort callback's result.
 */
/* The partition write_txn() produces to (UA: the partitioner's). */
static int32_t write_part = RD_KAFKA_PARTITION_UA;

static int write_txn(struct event_base *base, eb_kafka_t *k,
                     eb_state_writer_t *w, const struct eb_fp *fps,
                     const int64_t *times, size_t n, const struct ckp *cks,
                     size_t ncks, int do_abort)
{
        struct eb_envelope *envs = NULL;
        struct op o = {0, 0};
        size_t cnt = 0, i;
        int rc;

        if (eb_kafka_txn_begin(k) != 0)
                return -999;
        eb_state_writer_begin(w);
        rc = eb_state_seen_records(w, fps, times, n, 0, &envs, &cnt);
        if (rc)
                return rc;
        for (i = 0; i < cnt; i++) {
                if (eb_kafka_produce_to(k, &envs[i], write_part, NULL, NULL) !=
                    0)
                        rc = -998;
                eb_envelope_fini(&envs[i]);
        }
        free(envs);
        for (i = 0; i < ncks && !rc; i++) {
                struct eb_envelope env;
                json_t *cp = json_loads(cks[i].value, JSON_DECODE_ANY, NULL);

                rc = eb_state_checkpoint_record(w, cks[i].source, cp,
                                                eb_now_ms(), &env);
                json_decref(cp);
                if (!rc &&
                    eb_kafka_produce_to(k, &env, write_part, NULL, NULL) != 0)
                        rc = -997;
                eb_envelope_fini(&env);
        }
        if (rc)
                return rc;
        if (do_abort) {
                if (eb_kafka_flush(k, EB_T_TMOUT(10000)) != 0 ||
                    eb_kafka_txn_abort(k, on_op, &o) != 0)
                        return -996;
        } else if (eb_kafka_txn_commit(k, on_op, &o) != 0) {
                return -995;
        }
        if (eb_test_run_until(base, &o.fired, 1, 30000) != 0)
                return -ETIMEDOUT;
        if (o.err == 0 && !do_abort)
                eb_state_writer_committed(w);
        else
                eb_state_writer_aborted(w);
        return o.err;
}

static void make_ids(struct eb_fp *fps, int64_t *times, size_t n, int64_t t0)
{
        size_t i;

        for (i = 0; i < n; i++) {
                fps[i].hi = rnd();
                fps[i].lo = rnd();
                times[i] = t0 + (int64_t)i % 500;
        }
}

static size_t count_in(const eb_dedupe_t *dd, const struct eb_fp *fps, size_t n)
{
        size_t i, c = 0;

        for (i = 0; i < n; i++)
                c += eb_dedupe_contains(dd, &fps[i]);
        return c;
}

static const char *cp_of(json_t *cps, const char *source)
{
        return json_string_value(
                json_object_get(json_object_get(cps, source), "v"));
}

static int restore(const eb_kafka_t *k, const struct eb_config *cfg,
                   int distrust, eb_dedupe_t *dd, json_t *cps,
                   struct eb_state_restore_stats *st)
{
        struct eb_state_restore_opts opts;
        char errstr[1024];
        int rc;

        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = EB_T_TMOUT(30000);
        opts.distrust_tail = distrust;
        rc = eb_state_restore(eb_kafka_bootstrap(k), cfg, &opts, dd, cps, st,
                              errstr, sizeof(errstr));
        if (rc)
                fprintf(stderr, "  restore: %d %s\n", rc, errstr);
        return rc;
}

/* ---- topic creation ----------------------------------------------------- */

/* A topic config as the broker describes it ("" if it cannot say). */
static const char *topic_config(const char *topic, const char *name, char *buf,
                                size_t size)
{
        if (eb_tkafka_topic_config(eb_tkafka_bootstrap(kafka), topic, name, buf,
                                   size) != 0)
                buf[0] = '\0';
        return buf;
}

/*
 * On a broker that creates no topic by itself, evbridge creates both state
 * topics through CreateTopics with the configs docs/delivery.md documents
 * (checkpoints: one partition, compacted; seen: the requested partitions,
 * deleted after the dedupe window plus a day); a second call finds them.
 */
static void test_ensure_topics(void)
{
        struct event_base *base = event_base_new();
        struct eb_kmock_topic *topics = NULL;
        struct eb_config cfg;
        char errstr[1024], v[64];
        size_t n = 0, i;
        int ck = -1, seen = -1;
        eb_kafka_t *k;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        if (!eb_tkafka_shared(kafka)) {
                EB_CHECK_INT(eb_tkafka_broker_config(
                                     eb_tkafka_bootstrap(kafka), 1,
                                     "auto.create.topics.enable", v, sizeof(v)),
                             0);
                EB_CHECK_STR(v, "false");
        }
        cfg_init(&cfg, "ensure");
        k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        EB_REQUIRE(k != NULL);
        /* not there before */
        EB_CHECK_INT(eb_kmock_list_topics(eb_kafka_bootstrap(k),
                                          EB_T_TMOUT(10000), &topics, &n),
                     0);
        EB_CHECK(!eb_kmock_topics_has(topics, n, ck_topic));
        EB_CHECK(!eb_kmock_topics_has(topics, n, seen_topic));
        eb_kmock_topics_free(topics, n);
        EB_CHECK_INT(eb_state_ensure_topics(eb_kafka_rk(k), NULL, &cfg, 3,
                                            EB_T_TMOUT(20000), errstr,
                                            sizeof(errstr)),
                     0);
        /* again: they exist, fine */
        EB_CHECK_INT(eb_state_ensure_topics(eb_kafka_rk(k), NULL, &cfg, 3,
                                            EB_T_TMOUT(20000), errstr,
                                            sizeof(errstr)),
                     0);
        topics = NULL;
        n = 0;
        EB_CHECK_INT(eb_kmock_list_topics(eb_kafka_bootstrap(k),
                                          EB_T_TMOUT(10000), &topics, &n),
                     0);
        for (i = 0; i < n; i++) {
                if (!strcmp(topics[i].name, ck_topic))
                        ck = topics[i].partitions;
                if (!strcmp(topics[i].name, seen_topic))
                        seen = topics[i].partitions;
        }
        EB_CHECK_INT(ck, 1);
        EB_CHECK_INT(seen, 3);
        eb_kmock_topics_free(topics, n);
        EB_CHECK_STR(topic_config(ck_topic, "cleanup.policy", v, sizeof(v)),
                     "compact");
        EB_CHECK_STR(topic_config(seen_topic, "cleanup.policy", v, sizeof(v)),
                     "delete");
        /* 72 h window + 24 h margin */
        EB_CHECK_STR(topic_config(seen_topic, "retention.ms", v, sizeof(v)),
                     "345600000");
        eb_kafka_free(k);
        event_base_free(base);
}

/*
 * Through the Admin API with the broker not answering (SIGSTOP): a bounded
 * wait, and the failure says exactly what to create, with which configs.
 */
static void test_ensure_topics_admin_error(void)
{
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        struct eb_config cfg;
        char errstr[2048];
        char msg[256], expect[256];
        rd_kafka_t *rk = NULL;
        int rc, paused;

        if (!kafka || eb_tkafka_shared(kafka))
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg_init(&cfg, "admin-error");
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        EB_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                                   eb_tkafka_bootstrap(kafka), msg,
                                   sizeof(msg)) == RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!rk)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(rk != NULL);
        paused = eb_tkafka_ctl(kafka, "pause", 0);
        EB_CHECK_INT(paused, 0);
        errstr[0] = '\0';
        rc = eb_state_ensure_topics(rk, NULL, &cfg, 2, 1500, errstr,
                                    sizeof(errstr));
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        fprintf(stderr, "  info: %s\n", errstr);
        EB_CHECK(rc == -ETIMEDOUT || rc == -EIO);
        EB_CHECK(strstr(errstr, "create them before starting evbridge") !=
                 NULL);
        snprintf(expect, sizeof(expect),
                 "%s with partitions=1 cleanup.policy=compact", ck_topic);
        EB_CHECK(strstr(errstr, expect) != NULL);
        snprintf(expect, sizeof(expect),
                 "%s with partitions=2 cleanup.policy=delete "
                 "retention.ms=345600000",
                 seen_topic);
        EB_CHECK(strstr(errstr, expect) != NULL);
        rd_kafka_destroy(rk);
}

/* ---- restore --------------------------------------------------------------
 */

#define N 400

/*
 * txn1: ids A, src1=a1, src2=b1        committed
 * txn2: ids B, src2=b2                 committed
 * txn3: ids C, src1=XX, src3=XX        ABORTED (read back on the mock only)
 * txn4: ids D, src1=a2                 committed (the tail)
 *
 * @p embedded: on the mock, which shows the aborted transaction's records
 * to read_committed readers: restore must drop them by their stamps. On
 * the real broker restore never reads them.
 */
static void check_restore_skips_aborted(int embedded)
{
        static struct eb_fp ids[4][N];
        static int64_t times[4][N];
        const struct ckp t1[] = {{"src1", "{\"v\":\"a1\"}"},
                                 {"src2", "{\"v\":\"b1\"}"}};
        const struct ckp t2[] = {{"src2", "{\"v\":\"b2\"}"}};
        const struct ckp t3[] = {{"src1", "{\"v\":\"XX\"}"},
                                 {"src3", "{\"v\":\"XX\"}"}};
        const struct ckp t4[] = {{"src1", "{\"v\":\"a2\"}"}};
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        eb_state_writer_t *w;
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;
        int i;

        EB_REQUIRE(base != NULL);
        if (embedded)
                cfg_mock(&cfg, "aborted-embedded");
        else
                cfg_init(&cfg, "aborted");
        k = start(base, &cfg, 3);
        EB_REQUIRE(k != NULL);
        w = eb_state_writer_new(&cfg, 0);
        for (i = 0; i < 4; i++)
                make_ids(ids[i], times[i], N, eb_now_ms() / 1000 - 3600);
        EB_CHECK_INT(write_txn(base, k, w, ids[0], times[0], N, t1, 2, 0), 0);
        EB_CHECK_INT(write_txn(base, k, w, ids[1], times[1], N, t2, 1, 0), 0);
        EB_CHECK_INT(write_txn(base, k, w, ids[2], times[2], N, t3, 2, 1), 0);
        EB_CHECK_INT(write_txn(base, k, w, ids[3], times[3], N, t4, 1, 0), 0);

        dd = eb_dedupe_new(cfg.dedupe_capacity, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK_INT(count_in(dd, ids[0], N), N);
        EB_CHECK_INT(count_in(dd, ids[1], N), N);
        EB_CHECK_INT(count_in(dd, ids[2], N), 0);
        EB_CHECK_INT(count_in(dd, ids[3], N), N);
        EB_CHECK_INT(eb_dedupe_size(dd), 3 * N);
        EB_CHECK_STR(cp_of(cps, "src1"), "a2");
        EB_CHECK_STR(cp_of(cps, "src2"), "b2");
        EB_CHECK(json_object_get(cps, "src3") == NULL);
        EB_CHECK_INT(json_object_size(cps), 2);
        if (embedded) {
                /* the aborted transaction's records were read (the mock
                 * shows them) and dropped by their stamps */
                EB_CHECK_INT(st.ids_aborted, N);
                EB_CHECK_INT(st.txns_aborted, 1);
                EB_CHECK_INT(st.checkpoints_aborted, 2);
                EB_CHECK_INT(st.checkpoint_records, 6);
                EB_CHECK_INT(st.seen_records, 4);
        } else {
                /* read_committed: never read at all */
                EB_CHECK_INT(st.ids_aborted, 0);
                EB_CHECK_INT(st.txns_aborted, 0);
                EB_CHECK_INT(st.checkpoints_aborted, 0);
                EB_CHECK_INT(st.checkpoint_records, 4);
                EB_CHECK_INT(st.seen_records, 3);
        }
        EB_CHECK_INT(st.ids, 3 * N);
        EB_CHECK_INT(st.checkpoints, 2);
        EB_CHECK_INT(st.garbage, 0);
        EB_CHECK_INT(st.tails, 1);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* distrusting the unconfirmed last transaction */
        dd = eb_dedupe_new(cfg.dedupe_capacity, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 1, dd, cps, &st), 0);
        EB_CHECK_INT(count_in(dd, ids[3], N), 0);
        EB_CHECK_INT(eb_dedupe_size(dd), 2 * N);
        EB_CHECK_STR(cp_of(cps, "src1"), "a1");
        EB_CHECK_STR(cp_of(cps, "src2"), "b2");
        EB_CHECK_INT(st.ids_unconfirmed, N);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* a seal (an empty committed transaction) confirms it */
        EB_CHECK_INT(write_txn(base, k, w, NULL, NULL, 0, NULL, 0, 0), 0);
        dd = eb_dedupe_new(cfg.dedupe_capacity, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 1, dd, cps, &st), 0);
        EB_CHECK_INT(eb_dedupe_size(dd), 3 * N);
        EB_CHECK_STR(cp_of(cps, "src1"), "a2");
        EB_CHECK_INT(st.ids_unconfirmed, 0);
        json_decref(cps);
        eb_dedupe_free(dd);

        eb_state_writer_free(w);
        eb_kafka_free(k);
        event_base_free(base);
}

static void test_restore_skips_aborted(void)
{
        EB_REQUIRE(kafka != NULL);
        check_restore_skips_aborted(0);
}

static void test_restore_skips_aborted_embedded(void)
{
        check_restore_skips_aborted(1);
}

/* Expired ids, garbage on both topics, a restart (second writer). */
static void test_restore_expiry_garbage_restart(void)
{
        static struct eb_fp a[N], b[N];
        static int64_t ta[N], tb[N];
        const struct ckp c1[] = {{"s", "{\"v\":\"one\"}"}};
        const struct ckp c2[] = {{"s", "{\"v\":\"two\"}"}};
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_envelope junk;
        struct eb_config cfg;
        eb_state_writer_t *w1, *w2;
        struct op o = {0, 0};
        int64_t now_s = eb_now_ms() / 1000;
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;
        size_t i;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "expiry");
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        w1 = eb_state_writer_new(&cfg, 0);
        make_ids(a, ta, N, now_s - 100);
        make_ids(b, tb, N, now_s - 100);
        for (i = 0; i < N / 4; i++)
                ta[i] = now_s - WINDOW_S - 1000; /* expired */
        EB_CHECK_INT(write_txn(base, k, w1, a, ta, N, c1, 1, 0), 0);

        /* junk in both topics, in its own committed transaction */
        EB_REQUIRE(eb_kafka_txn_begin(k) == 0);
        memset(&junk, 0, sizeof(junk));
        junk.topic = eb_xstrdup(seen_topic);
        junk.key = eb_xstrdup(txn_id);
        junk.key_len = strlen(junk.key);
        junk.value = eb_xstrdup("\xeb\x5e\x01\x00 not really");
        junk.value_len = strlen(junk.value);
        EB_CHECK_INT(eb_kafka_produce(k, &junk, NULL, NULL), 0);
        free(junk.topic);
        junk.topic = eb_xstrdup(ck_topic);
        free(junk.key);
        junk.key = eb_xstrdup("s");
        junk.key_len = 1;
        EB_CHECK_INT(eb_kafka_produce(k, &junk, NULL, NULL), 0);
        eb_envelope_fini(&junk);
        EB_REQUIRE(eb_kafka_txn_commit(k, on_op, &o) == 0);
        EB_CHECK_INT(eb_test_run_until(base, &o.fired, 1, 30000), 0);
        EB_CHECK_INT(o.err, 0);

        /* "restart": a new session goes on with the same producer */
        w2 = eb_state_writer_new(&cfg, 0);
        EB_CHECK_INT(write_txn(base, k, w2, b, tb, N, c2, 1, 0), 0);

        dd = eb_dedupe_new(cfg.dedupe_capacity, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK_INT(count_in(dd, a, N / 4), 0);
        EB_CHECK_INT(count_in(dd, a + N / 4, N - N / 4), N - N / 4);
        EB_CHECK_INT(count_in(dd, b, N), N);
        EB_CHECK_INT(st.ids_expired, N / 4);
        EB_CHECK_INT(st.garbage, 2);
        EB_CHECK_INT(st.tails, 2); /* one per session */
        EB_CHECK_STR(cp_of(cps, "s"), "two");
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w1);
        eb_state_writer_free(w2);
        eb_kafka_free(k);
        event_base_free(base);
}

/* First start: nothing written yet. */
static void test_restore_empty(void)
{
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "empty");
        k = start(base, &cfg, 4);
        EB_REQUIRE(k != NULL);
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK_INT(st.records, 0);
        EB_CHECK_INT(eb_dedupe_size(dd), 0);
        EB_CHECK_INT(json_object_size(cps), 0);
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_kafka_free(k);
        event_base_free(base);
}

/* Sharding (docs/scaling.md): a shard restores only the .seen records of
 * its own transactional.id (plus the unsharded one's) and only the
 * checkpoints of its sources. */
static int only_a(const char *source, void *opaque)
{
        (void)opaque;
        return source[0] == 'a';
}

static void test_restore_shard_filters(void)
{
        static char shard0[] = "evbt-shard-0", shard1[] = "evbt-shard-1";
        const char *keys[] = {shard0, txn_id, NULL};
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_state_restore_opts opts;
        struct eb_config cfg, c0, c1;
        struct eb_fp a[100], b[100], l[50];
        int64_t ta[100], tb[100], tl[50];
        int64_t t0 = eb_now_ms() / 1000 - 60;
        eb_state_writer_t *w0, *w1, *wl;
        const struct ckp ca[] = {{"a-src", "{\"v\":\"a1\"}"}};
        const struct ckp cb[] = {{"b-src", "{\"v\":\"b1\"}"}};
        char errstr[1024];
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "shards");
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        c0 = cfg;
        c0.transactional_id = shard0;
        c1 = cfg;
        c1.transactional_id = shard1;
        w0 = eb_state_writer_new(&c0, 0);
        w1 = eb_state_writer_new(&c1, 0);
        wl = eb_state_writer_new(&cfg, 0);
        make_ids(a, ta, 100, t0);
        make_ids(b, tb, 100, t0);
        make_ids(l, tl, 50, t0);
        EB_CHECK_INT(write_txn(base, k, wl, l, tl, 50, NULL, 0, 0), 0);
        EB_CHECK_INT(write_txn(base, k, w0, a, ta, 100, ca, 1, 0), 0);
        EB_CHECK_INT(write_txn(base, k, w1, b, tb, 100, cb, 1, 0), 0);

        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = EB_T_TMOUT(30000);
        opts.seen_keys = keys;
        opts.want_source = only_a;
        EB_CHECK_INT(eb_state_restore(eb_kafka_bootstrap(k), &cfg, &opts, dd,
                                      cps, &st, errstr, sizeof(errstr)),
                     0);
        EB_CHECK_INT(count_in(dd, a, 100), 100);
        EB_CHECK_INT(count_in(dd, l, 50), 50);
        EB_CHECK_INT(count_in(dd, b, 100), 0);
        EB_CHECK_STR(cp_of(cps, "a-src"), "a1");
        EB_CHECK(json_object_get(cps, "b-src") == NULL);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* Without filters (unsharded): everything. */
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK_INT(count_in(dd, b, 100), 100);
        EB_CHECK_STR(cp_of(cps, "b-src"), "b1");
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w0);
        eb_state_writer_free(w1);
        eb_state_writer_free(wl);
        eb_kafka_free(k);
        event_base_free(base);
}

/* Partitions of @p topic as the broker lists them (-1: not listed). */
static int partitions_of(const eb_kafka_t *k, const char *topic)
{
        struct eb_kmock_topic *topics = NULL;
        size_t n = 0, i;
        int p = -1;

        if (eb_kmock_list_topics(eb_kafka_bootstrap(k), EB_T_TMOUT(10000),
                                 &topics, &n) != 0)
                return -1;
        for (i = 0; i < n; i++)
                if (!strcmp(topics[i].name, topic))
                        p = topics[i].partitions;
        eb_kmock_topics_free(topics, n);
        return p;
}

/* A restore as shard @p n of a config with scale.shards (no filters, so
 * that only the partition choice decides what is read). */
static int restore_shard(const eb_kafka_t *k, const struct eb_config *cfg,
                         int n, eb_dedupe_t *dd, json_t *cps,
                         struct eb_state_restore_stats *st)
{
        struct eb_state_restore_opts opts;
        char errstr[1024];
        int rc;

        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = EB_T_TMOUT(30000);
        opts.shard_partition = eb_state_shard_partition(n);
        opts.partitions = eb_state_partitions(cfg);
        rc = eb_state_restore(eb_kafka_bootstrap(k), cfg, &opts, dd, cps, st,
                              errstr, sizeof(errstr));
        if (rc)
                fprintf(stderr, "  restore: %d %s\n", rc, errstr);
        return rc;
}

/*
 * State partitioned by shard (docs/scaling.md, "State partitions"): with
 * scale.shards 2 both state topics are created with 3 partitions; shard
 * n's restore reads partition n + 1 and partition 0 (records from before
 * the topics were partitioned) and nothing of the other shard's partition,
 * even without key filters. A checkpoint in partition 0 older than the
 * shard's own loses to it (record time across partitions).
 */
static void test_restore_shard_partitions(void)
{
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        struct eb_fp a[80], b[80], l[40];
        int64_t ta[80], tb[80], tl[40];
        int64_t t0 = eb_now_ms() / 1000 - 60;
        eb_state_writer_t *w;
        const struct ckp cl[] = {{"a-src", "{\"v\":\"old\"}"},
                                 {"l-src", "{\"v\":\"l1\"}"}};
        const struct ckp ca[] = {{"a-src", "{\"v\":\"a1\"}"},
                                 {"x-src", "{\"v\":\"x1\"}"}};
        const struct ckp cb[] = {{"b-src", "{\"v\":\"b1\"}"}};
        const char *nokeys[] = {"evbt-nobody", NULL};
        struct eb_state_restore_opts opts;
        char errstr[1024];
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "partitioned");
        cfg.scale_shards = 2;
        EB_CHECK_INT(eb_state_partitions(&cfg), 3);
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        EB_CHECK_INT(partitions_of(k, ck_topic), 3);
        EB_CHECK_INT(partitions_of(k, seen_topic), 3);
        w = eb_state_writer_new(&cfg, 0);
        make_ids(a, ta, 80, t0);
        make_ids(b, tb, 80, t0);
        make_ids(l, tl, 40, t0);
        write_part = 0; /* written before the topics were partitioned */
        EB_CHECK_INT(write_txn(base, k, w, l, tl, 40, cl, 2, 0), 0);
        usleep(20 * 1000); /* a later record time for a-src below */
        write_part = eb_state_shard_partition(0);
        EB_CHECK_INT(write_txn(base, k, w, a, ta, 80, ca, 2, 0), 0);
        write_part = eb_state_shard_partition(1);
        EB_CHECK_INT(write_txn(base, k, w, b, tb, 80, cb, 1, 0), 0);
        write_part = RD_KAFKA_PARTITION_UA;

        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore_shard(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK_INT(st.partitioned, 3);
        EB_CHECK_INT(st.partitions_seen, 3);
        EB_CHECK_INT(st.partitions_checkpoints, 3);
        EB_CHECK_INT(count_in(dd, a, 80), 80);
        EB_CHECK_INT(count_in(dd, l, 40), 40);
        EB_CHECK_INT(count_in(dd, b, 80), 0);
        EB_CHECK_STR(cp_of(cps, "a-src"), "a1");
        EB_CHECK_STR(cp_of(cps, "l-src"), "l1");
        EB_CHECK(json_object_get(cps, "b-src") == NULL);
        json_decref(cps);
        eb_dedupe_free(dd);

        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore_shard(k, &cfg, 1, dd, cps, &st), 0);
        EB_CHECK_INT(count_in(dd, b, 80), 80);
        EB_CHECK_INT(count_in(dd, a, 80), 0);
        EB_CHECK_STR(cp_of(cps, "b-src"), "b1");
        EB_CHECK_STR(cp_of(cps, "a-src"), "old");
        EB_CHECK(json_object_get(cps, "x-src") == NULL);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* With the key filters of a shard: they sort partition 0 (every
         * shard's older records), while the shard's own partition is
         * all its own whatever the keys (x-src fails only_a, and no seen
         * key is wanted). */
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = EB_T_TMOUT(30000);
        opts.shard_partition = eb_state_shard_partition(0);
        opts.partitions = eb_state_partitions(&cfg);
        opts.seen_keys = nokeys;
        opts.want_source = only_a;
        EB_CHECK_INT(eb_state_restore(eb_kafka_bootstrap(k), &cfg, &opts, dd,
                                      cps, &st, errstr, sizeof(errstr)),
                     0);
        EB_CHECK_INT(count_in(dd, a, 80), 80);
        EB_CHECK_INT(count_in(dd, l, 40), 0);
        EB_CHECK_STR(cp_of(cps, "a-src"), "a1");
        EB_CHECK_STR(cp_of(cps, "x-src"), "x1");
        EB_CHECK(json_object_get(cps, "l-src") == NULL);
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w);
        eb_kafka_free(k);
        event_base_free(base);
}

/*
 * An existing deployment's state topics with one partition (made before
 * they were partitioned by shard): a shard's restore falls back to
 * reading them whole, says so in its stats, and finds everything.
 */
static void test_restore_shard_legacy_layout(void)
{
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_config cfg, c1;
        struct eb_fp a[60], b[60];
        int64_t ta[60], tb[60];
        int64_t t0 = eb_now_ms() / 1000 - 60;
        eb_state_writer_t *w;
        const struct ckp ca[] = {{"a-src", "{\"v\":\"a1\"}"}};
        const struct ckp cb[] = {{"b-src", "{\"v\":\"b1\"}"}};
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "legacy"); /* scale.shards 0: one partition each */
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        EB_CHECK_INT(partitions_of(k, ck_topic), 1);
        EB_CHECK_INT(partitions_of(k, seen_topic), 1);
        w = eb_state_writer_new(&cfg, 0);
        make_ids(a, ta, 60, t0);
        make_ids(b, tb, 60, t0);
        EB_CHECK_INT(write_txn(base, k, w, a, ta, 60, ca, 1, 0), 0);
        EB_CHECK_INT(write_txn(base, k, w, b, tb, 60, cb, 1, 0), 0);

        c1 = cfg;
        c1.scale_shards = 4;
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore_shard(k, &c1, 2, dd, cps, &st), 0);
        EB_CHECK_INT(st.partitioned, 0);
        EB_CHECK_INT(st.partitions_seen, 1);
        EB_CHECK_INT(st.partitions_checkpoints, 1);
        EB_CHECK_INT(count_in(dd, a, 60), 60);
        EB_CHECK_INT(count_in(dd, b, 60), 60);
        EB_CHECK_STR(cp_of(cps, "a-src"), "a1");
        EB_CHECK_STR(cp_of(cps, "b-src"), "b1");
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w);
        eb_kafka_free(k);
        event_base_free(base);
}

/* Broker not answering (SIGSTOP): a bounded wait and a clear error. Bad
 * arguments. */
static void test_restore_errors(void)
{
        struct event_base *base = event_base_new();
        struct eb_state_restore_opts opts;
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        char errstr[1024];
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;
        int rc;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        cfg_init(&cfg, "errors");
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(eb_state_restore(eb_kafka_bootstrap(k), &cfg, NULL, dd,
                                      NULL, &st, errstr, sizeof(errstr)),
                     -EINVAL);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = 1500;
        errstr[0] = '\0';
        rc = eb_state_restore(eb_kafka_bootstrap(k), &cfg, &opts, dd, cps, &st,
                              errstr, sizeof(errstr));
        fprintf(stderr, "  info: broker down: %d %s\n", rc, errstr);
        EB_CHECK(rc == -ETIMEDOUT || rc == -EIO);
        EB_CHECK(strstr(errstr, "state restore") != NULL);
        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_kafka_free(k);
        event_base_free(base);
}

/* 100k ids in 10 transactions, 60 sources checkpointed in each. */
static void test_restore_100k(void)
{
        const size_t per_txn = 10000, txns = 10, sources = 60;
        struct event_base *base = event_base_new();
        struct eb_fp *fps = eb_xcalloc(per_txn * txns, sizeof(*fps));
        int64_t *times = eb_xcalloc(per_txn * txns, sizeof(*times));
        struct ckp cks[60];
        char names[60][16];
        char values[60][40];
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        eb_state_writer_t *w = NULL;
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;
        size_t t, s;
        int bad = 0;

        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "100k");
        k = start(base, &cfg, 3);
        if (!k) {
                free(fps);
                free(times);
                EB_REQUIRE(0);
        }
        w = eb_state_writer_new(&cfg, 0);
        make_ids(fps, times, per_txn * txns, eb_now_ms() / 1000 - 7200);
        for (t = 0; t < txns; t++) {
                for (s = 0; s < sources; s++) {
                        snprintf(names[s], sizeof(names[s]), "src-%02zu", s);
                        snprintf(values[s], sizeof(values[s]),
                                 "{\"v\":\"t%zu\"}", t);
                        cks[s].source = names[s];
                        cks[s].value = values[s];
                }
                if (write_txn(base, k, w, fps + t * per_txn,
                              times + t * per_txn, per_txn, cks, sources,
                              0) != 0)
                        bad++;
        }
        EB_CHECK_INT(bad, 0);

        dd = eb_dedupe_new(cfg.dedupe_capacity, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        fprintf(stderr,
                "  info: restored %llu ids and %llu checkpoints from %llu "
                "records in %lld ms\n",
                (unsigned long long)st.ids, (unsigned long long)st.checkpoints,
                (unsigned long long)st.records, (long long)st.ms);
        EB_CHECK_INT(st.ids, per_txn * txns);
        EB_CHECK_INT(eb_dedupe_size(dd), per_txn * txns);
        EB_CHECK_INT(count_in(dd, fps, per_txn * txns), per_txn * txns);
        EB_CHECK_INT(st.checkpoints, sources);
        for (s = 0; s < sources; s++)
                EB_CHECK_STR(cp_of(cps, names[s]), "t9");
        EB_CHECK_INT(st.garbage, 0);
        EB_CHECK_INT(st.ids_aborted, 0);
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w);
        eb_kafka_free(k);
        event_base_free(base);
        free(fps);
        free(times);
}

/*
 * The checkpoints topic really compacts: 800 updates of ~4 KB for four
 * sources fill more than three of the test broker's 1 MB segments; its log
 * cleaner (every second, no compaction lag) then removes the superseded
 * records of the closed segments, which a read of the raw topic shows, and
 * a restore (what a restart does) still gives each source's latest
 * checkpoint.
 */
static void test_checkpoints_compacted(void)
{
        enum { SOURCES = 4, TXNS = 20, PER = 40 };
        const char *const topics[] = {ck_topic, NULL};
        struct event_base *base = event_base_new();
        struct eb_state_restore_stats st;
        struct eb_kmock_records recs;
        struct ckp cks[PER];
        char names[SOURCES][16], expect[SOURCES][32];
        char *values[PER];
        char *pad = eb_xcalloc(4001, 1);
        struct eb_config cfg;
        eb_state_writer_t *w;
        size_t written = (size_t)TXNS * PER, seen_cnt = written;
        int64_t until;
        eb_dedupe_t *dd;
        eb_kafka_t *k;
        json_t *cps;
        int t, j, bad = 0;

        memset(pad, 'x', 4000);
        if (!base || !kafka)
                free(pad);
        EB_REQUIRE(base != NULL);
        EB_REQUIRE(kafka != NULL);
        cfg_init(&cfg, "compact");
        k = start(base, &cfg, 1);
        if (!k)
                free(pad);
        EB_REQUIRE(k != NULL);
        w = eb_state_writer_new(&cfg, 0);
        for (j = 0; j < SOURCES; j++)
                snprintf(names[j], sizeof(names[j]), "src-%d", j);
        for (t = 0; t < TXNS; t++) {
                for (j = 0; j < PER; j++) {
                        values[j] = eb_xasprintf(
                                "{\"v\":\"t%d-%d\",\"pad\":\"%s\"}", t, j, pad);
                        cks[j].source = names[j % SOURCES];
                        cks[j].value = values[j];
                }
                if (write_txn(base, k, w, NULL, NULL, 0, cks, PER, 0) != 0)
                        bad++;
                for (j = 0; j < PER; j++)
                        free(values[j]);
        }
        EB_CHECK_INT(bad, 0);
        for (j = 0; j < SOURCES; j++)
                snprintf(expect[j], sizeof(expect[j]), "t%d-%d", TXNS - 1,
                         PER - SOURCES + j);

        /* the log cleaner's turn */
        until = eb_mono_ms() + EB_T_TMOUT(60000);
        while (eb_mono_ms() < until) {
                int rc = eb_kmock_consume_all(eb_tkafka_bootstrap(kafka),
                                              topics, EB_T_TMOUT(20000), &recs);

                seen_cnt = rc == 0 ? recs.cnt : written;
                eb_kmock_records_free(&recs);
                if (seen_cnt < written)
                        break;
                sleep(1);
        }
        fprintf(stderr,
                "  info: %zu checkpoint records written, %zu left after "
                "compaction\n",
                written, seen_cnt);
        EB_CHECK(seen_cnt < written);
        EB_CHECK(seen_cnt >= SOURCES);

        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(restore(k, &cfg, 0, dd, cps, &st), 0);
        EB_CHECK(st.checkpoint_records < written);
        EB_CHECK_INT(st.checkpoints, SOURCES);
        EB_CHECK_INT(json_object_size(cps), SOURCES);
        for (j = 0; j < SOURCES; j++)
                EB_CHECK_STR(cp_of(cps, names[j]), expect[j]);
        EB_CHECK_INT(st.garbage, 0);
        json_decref(cps);
        eb_dedupe_free(dd);
        eb_state_writer_free(w);
        eb_kafka_free(k);
        event_base_free(base);
        free(pad);
}

int main(void)
{
        int rc;

        eb_log_level = EB_LOG_WARN;
        /* no auto-creation: every state topic is evbridge's own doing */
        kafka = eb_tkafka_start(1, "--no-auto-create");
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        EB_RUN(test_ensure_topics);
        EB_RUN(test_ensure_topics_admin_error);
        EB_RUN(test_restore_skips_aborted);
        EB_RUN(test_restore_expiry_garbage_restart);
        EB_RUN(test_restore_empty);
        EB_RUN(test_restore_shard_filters);
        EB_RUN(test_restore_shard_partitions);
        EB_RUN(test_restore_shard_legacy_layout);
        EB_RUN(test_restore_errors);
        EB_RUN(test_restore_100k);
        EB_RUN(test_checkpoints_compacted);
        /* the embedded mock */
        EB_RUN(test_restore_skips_aborted_embedded);
        rc = eb_test_summary();
        eb_tkafka_stop(kafka);
        return rc;
}
