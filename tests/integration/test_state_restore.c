/*
 * Integration tests for eb_state against the embedded cluster (librdkafka
 * 2.0.2 mock): creating the state topics, writing checkpoints and seen ids
 * in transactions through eb_kafka's transactional API exactly as the
 * pipeline will, and restoring them into a fresh dedupe table and
 * checkpoint map (exact contents, latest checkpoint wins, expiry,
 * garbage, a 100k-id restore with its time reported).
 *
 * The mock ignores read_committed, so records of an aborted transaction
 * ARE read back here; test_restore_skips_aborted checks that restore drops
 * them by their transaction stamps. The mock has no CreateTopics /
 * DescribeConfigs (no controller): topic creation is checked through
 * metadata, and the Admin API path only for its error message.
 */
#include "eb_dedupe.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_state.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_util.h"

#include <errno.h>
#include <event2/event.h>

#define WINDOW_S (72 * 3600)

static char prefix[] = "evbt";
static char txn_id[] = "evbt-main";

static uint64_t rng = 0x243f6a8885a308d3ULL;

static uint64_t rnd(void)
{
        rng ^= rng >> 12;
        rng ^= rng << 25;
        rng ^= rng >> 27;
        return rng * 0x2545f4914f6cdd1dULL;
}

static void cfg_init(struct eb_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->embedded = 1;
        cfg->embedded_brokers = 1;
        cfg->queue_max_messages = 200000;
        cfg->drain_timeout_ms = EB_T_TMOUT(5000);
        cfg->delivery = EB_DELIVERY_EXACTLY_ONCE;
        cfg->transactional_id = txn_id;
        cfg->state_prefix = prefix;
        cfg->dedupe_window_ms = (int64_t)WINDOW_S * 1000;
        cfg->dedupe_capacity = 1000000;
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

/* A transactional producer on a fresh embedded cluster, with the state
 * topics created and transactions initialised. */
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
                if (eb_kafka_produce(k, &envs[i], NULL, NULL) != 0)
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
                if (!rc && eb_kafka_produce(k, &env, NULL, NULL) != 0)
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

static void test_ensure_topics(void)
{
        struct event_base *base = event_base_new();
        struct eb_kmock_topic *topics = NULL;
        struct eb_config cfg;
        char errstr[1024];
        size_t n = 0, i;
        int ck = -1, seen = -1;
        eb_kafka_t *k;

        EB_REQUIRE(base != NULL);
        cfg_init(&cfg);
        k = eb_kafka_new(base, &cfg, errstr, sizeof(errstr));
        EB_REQUIRE(k != NULL);
        EB_CHECK_INT(eb_state_ensure_topics(
                             eb_kafka_rk(k), eb_kafka_mock_cluster(k), &cfg, 3,
                             EB_T_TMOUT(10000), errstr, sizeof(errstr)),
                     0);
        /* again: they exist, fine */
        EB_CHECK_INT(eb_state_ensure_topics(
                             eb_kafka_rk(k), eb_kafka_mock_cluster(k), &cfg, 3,
                             EB_T_TMOUT(10000), errstr, sizeof(errstr)),
                     0);
        EB_CHECK_INT(eb_kmock_list_topics(eb_kafka_bootstrap(k),
                                          EB_T_TMOUT(10000), &topics, &n),
                     0);
        for (i = 0; i < n; i++) {
                if (!strcmp(topics[i].name, "evbt.checkpoints"))
                        ck = topics[i].partitions;
                if (!strcmp(topics[i].name, "evbt.seen"))
                        seen = topics[i].partitions;
        }
        EB_CHECK_INT(ck, 1);
        EB_CHECK_INT(seen, 3);
        eb_kmock_topics_free(topics, n);
        eb_kafka_free(k);
        event_base_free(base);
}

/*
 * Through the Admin API. The 2.0.2 mock reports no controller, so
 * CreateTopics cannot succeed there: what is checked is that the failure
 * says exactly what to create, with which configs.
 */
static void test_ensure_topics_admin_error(void)
{
        eb_kmock_t *m = eb_kmock_start(1);
        rd_kafka_conf_t *conf = rd_kafka_conf_new();
        struct eb_config cfg;
        char errstr[2048];
        char msg[256];
        rd_kafka_t *rk = NULL;
        int rc;

        if (!m)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(m != NULL);
        cfg_init(&cfg);
        rd_kafka_conf_set_log_cb(conf, eb_log_rdkafka_cb);
        EB_CHECK(rd_kafka_conf_set(conf, "bootstrap.servers",
                                   eb_kmock_bootstrap(m), msg,
                                   sizeof(msg)) == RD_KAFKA_CONF_OK);
        rk = rd_kafka_new(RD_KAFKA_PRODUCER, conf, msg, sizeof(msg));
        if (!rk)
                rd_kafka_conf_destroy(conf);
        EB_REQUIRE(rk != NULL);
        errstr[0] = '\0';
        rc = eb_state_ensure_topics(rk, NULL, &cfg, 2, 1500, errstr,
                                    sizeof(errstr));
        fprintf(stderr, "  info: %s\n", errstr);
        EB_CHECK(rc == -ETIMEDOUT || rc == -EIO);
        EB_CHECK(strstr(errstr, "create them before starting evbridge") !=
                 NULL);
        EB_CHECK(strstr(errstr, "evbt.checkpoints with partitions=1 "
                                "cleanup.policy=compact") != NULL);
        EB_CHECK(strstr(errstr, "evbt.seen with partitions=2 "
                                "cleanup.policy=delete "
                                "retention.ms=345600000") != NULL);
        rd_kafka_destroy(rk);
        eb_kmock_stop(m);
}

/* ---- restore --------------------------------------------------------------
 */

#define N 400

/*
 * txn1: ids A, src1=a1, src2=b1        committed
 * txn2: ids B, src2=b2                 committed
 * txn3: ids C, src1=XX, src3=XX        ABORTED (visible on the mock)
 * txn4: ids D, src1=a2                 committed (the tail)
 */
static void test_restore_skips_aborted(void)
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
        cfg_init(&cfg);
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
        /* the aborted transaction's records were read (the mock shows
         * them) and dropped by their stamps */
        EB_CHECK_INT(st.ids_aborted, N);
        EB_CHECK_INT(st.txns_aborted, 1);
        EB_CHECK_INT(st.checkpoints_aborted, 2);
        EB_CHECK_INT(st.ids, 3 * N);
        EB_CHECK_INT(st.checkpoints, 2);
        EB_CHECK_INT(st.checkpoint_records, 6);
        EB_CHECK_INT(st.seen_records, 4);
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
        cfg_init(&cfg);
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
        junk.topic = eb_xstrdup("evbt.seen");
        junk.key = eb_xstrdup("evbt-main");
        junk.key_len = strlen(junk.key);
        junk.value = eb_xstrdup("\xeb\x5e\x01\x00 not really");
        junk.value_len = strlen(junk.value);
        EB_CHECK_INT(eb_kafka_produce(k, &junk, NULL, NULL), 0);
        free(junk.topic);
        junk.topic = eb_xstrdup("evbt.checkpoints");
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
        cfg_init(&cfg);
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
        cfg_init(&cfg);
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

/* Broker down: a bounded wait and a clear error. Bad arguments. */
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
        cfg_init(&cfg);
        k = start(base, &cfg, 1);
        EB_REQUIRE(k != NULL);
        dd = eb_dedupe_new(1000, WINDOW_S);
        cps = json_object();
        EB_CHECK_INT(eb_state_restore(eb_kafka_bootstrap(k), &cfg, NULL, dd,
                                      NULL, &st, errstr, sizeof(errstr)),
                     -EINVAL);
        rd_kafka_mock_broker_set_down(eb_kafka_mock_cluster(k), 1);
        memset(&opts, 0, sizeof(opts));
        opts.timeout_ms = 1500;
        errstr[0] = '\0';
        rc = eb_state_restore(eb_kafka_bootstrap(k), &cfg, &opts, dd, cps, &st,
                              errstr, sizeof(errstr));
        fprintf(stderr, "  info: broker down: %d %s\n", rc, errstr);
        EB_CHECK(rc == -ETIMEDOUT || rc == -EIO);
        EB_CHECK(strstr(errstr, "state restore") != NULL);
        rd_kafka_mock_broker_set_up(eb_kafka_mock_cluster(k), 1);
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
        cfg_init(&cfg);
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

int main(void)
{
        eb_log_level = EB_LOG_WARN;
        EB_RUN(test_ensure_topics);
        EB_RUN(test_ensure_topics_admin_error);
        EB_RUN(test_restore_skips_aborted);
        EB_RUN(test_restore_expiry_garbage_restart);
        EB_RUN(test_restore_empty);
        EB_RUN(test_restore_shard_filters);
        EB_RUN(test_restore_errors);
        EB_RUN(test_restore_100k);
        return eb_test_summary();
}
