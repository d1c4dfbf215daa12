/*
 * Unit tests for eb_state without Kafka: topic names and retention, the
 * writer's transaction stamps, the seen record format (round trips,
 * splitting, every kind of garbage refused without a crash), checkpoint
 * records, and the loader that restore runs on what it reads: committed
 * and aborted transactions, unconfirmed last transactions, several
 * sessions, expiry, tombstones, latest-checkpoint-wins and garbage.
 */
#include "eb_state.h"
#include "eb_test.h"
#include "eb_util.h"

#include <errno.h>

#define NOW_S  INT64_C(1700000000)
#define WINDOW (72 * 3600)

static uint64_t rng_state = 0x9e3779b97f4a7c15u;

static uint64_t rnd(void)
{
        /* xorshift64*: deterministic, good enough for test data */
        rng_state ^= rng_state >> 12;
        rng_state ^= rng_state << 25;
        rng_state ^= rng_state >> 27;
        return rng_state * 0x2545f4914f6cdd1dULL;
}

static char prefix[] = "evb";
static char txn_id[] = "evb-main";

static void cfg_init(struct eb_config *cfg)
{
        memset(cfg, 0, sizeof(*cfg));
        cfg->state_prefix = prefix;
        cfg->transactional_id = txn_id;
        cfg->dedupe_window_ms = (int64_t)WINDOW * 1000;
}

static void make_ids(struct eb_fp *fps, int64_t *times, size_t n, int64_t t0)
{
        size_t i;

        for (i = 0; i < n; i++) {
                fps[i].hi = rnd();
                fps[i].lo = rnd();
                times[i] = t0 + (int64_t)(rnd() % 600) - 300;
        }
}

/* ---- names -------------------------------------------------------------- */

static void test_names(void)
{
        struct eb_config cfg;
        char *a, *b;

        cfg_init(&cfg);
        a = eb_state_topic_checkpoints(&cfg);
        b = eb_state_topic_seen(&cfg);
        EB_CHECK_STR(a, "evb.checkpoints");
        EB_CHECK_STR(b, "evb.seen");
        free(a);
        free(b);
        EB_CHECK_INT(eb_state_seen_retention_ms(&cfg),
                     (int64_t)(WINDOW + 86400) * 1000);
        cfg.dedupe_window_ms = 0;
        EB_CHECK_INT(eb_state_seen_retention_ms(&cfg), -1);
        cfg.state_prefix = NULL;
        a = eb_state_topic_seen(&cfg);
        EB_CHECK_STR(a, "evbridge.seen");
        free(a);
}

/* ---- writer ------------------------------------------------------------- */

static void test_writer(void)
{
        struct eb_config cfg;
        struct eb_state_txn txn;
        eb_state_writer_t *w, *w2;

        cfg_init(&cfg);
        w = eb_state_writer_new(&cfg, 0x1234);
        eb_state_writer_txn(w, &txn);
        EB_CHECK(txn.session == 0x1234);
        EB_CHECK_INT(txn.seq, 0); /* nothing open */
        EB_CHECK_INT(eb_state_writer_begin(w), 1);
        eb_state_writer_txn(w, &txn);
        EB_CHECK_INT(txn.seq, 1);
        EB_CHECK_INT(txn.prev, 0);
        eb_state_writer_committed(w);
        EB_CHECK_INT(eb_state_writer_begin(w), 2);
        eb_state_writer_aborted(w);
        EB_CHECK_INT(eb_state_writer_begin(w), 3);
        eb_state_writer_txn(w, &txn);
        EB_CHECK_INT(txn.seq, 3);
        EB_CHECK_INT(txn.prev, 1); /* 2 was aborted */
        /* begin without an outcome: taken as aborted */
        EB_CHECK_INT(eb_state_writer_begin(w), 4);
        eb_state_writer_txn(w, &txn);
        EB_CHECK_INT(txn.prev, 1);
        eb_state_writer_committed(w);
        eb_state_writer_committed(w); /* nothing open: no change */
        EB_CHECK_INT(eb_state_writer_begin(w), 5);
        eb_state_writer_txn(w, &txn);
        EB_CHECK_INT(txn.prev, 4);
        eb_state_writer_free(w);

        /* random sessions differ and are never 0 */
        w = eb_state_writer_new(&cfg, 0);
        w2 = eb_state_writer_new(&cfg, 0);
        {
                struct eb_state_txn t2;

                eb_state_writer_txn(w, &txn);
                eb_state_writer_txn(w2, &t2);
                EB_CHECK(txn.session != 0);
                EB_CHECK(txn.session != t2.session);
        }
        eb_state_writer_free(w);
        eb_state_writer_free(w2);
        eb_state_writer_free(NULL);
}

/* ---- seen records --------------------------------------------------------
 */

static void check_round_trip(size_t n, const int64_t *fixed_times)
{
        struct eb_state_txn txn = {0xfeedfacecafebeefULL, 77, 70};
        struct eb_state_txn got;
        struct eb_fp *fps = eb_xcalloc(n + 1, sizeof(*fps));
        int64_t *times = eb_xcalloc(n + 1, sizeof(*times));
        struct eb_fp *dfps = NULL;
        int64_t *dtimes = NULL;
        unsigned char *buf = NULL;
        size_t len = 0, dn = 99, i;

        make_ids(fps, times, n, NOW_S);
        if (fixed_times)
                memcpy(times, fixed_times, n * sizeof(*times));
        EB_REQUIRE(eb_state_seen_encode(&txn, fps, times, n, &buf, &len) == 0);
        EB_CHECK(len <= 12 + 30 + n * 26);
        EB_REQUIRE(eb_state_seen_decode(buf, len, &got, &dfps, &dtimes, &dn) ==
                   0);
        EB_CHECK(got.session == txn.session);
        EB_CHECK_INT(got.seq, 77);
        EB_CHECK_INT(got.prev, 70);
        EB_CHECK_INT(dn, n);
        for (i = 0; i < n && i < dn; i++) {
                EB_CHECK(dfps[i].hi == fps[i].hi && dfps[i].lo == fps[i].lo);
                EB_CHECK_INT(dtimes[i], times[i]);
        }
        free(buf);
        free(dfps);
        free(dtimes);
        free(fps);
        free(times);
}

static void test_seen_round_trip(void)
{
        const int64_t edge[] = {0,         (int64_t)1 << 40, 0, 1, NOW_S,
                                NOW_S - 1, NOW_S + 100000};
        struct eb_state_txn txn = {1, 1, 0};
        unsigned char *buf = NULL;
        struct eb_fp fp = {0, 0};
        int64_t bad = -1, big = ((int64_t)1 << 40) + 1;
        size_t len;

        check_round_trip(0, NULL);
        check_round_trip(1, NULL);
        check_round_trip(1000, NULL);
        check_round_trip(sizeof(edge) / sizeof(edge[0]), edge);

        /* size: an id of a page of close times costs ~17-18 bytes */
        {
                struct eb_fp fps[1000];
                int64_t times[1000];
                size_t i;

                for (i = 0; i < 1000; i++) {
                        fps[i].hi = rnd();
                        fps[i].lo = rnd();
                        times[i] = NOW_S + (int64_t)i;
                }
                EB_REQUIRE(eb_state_seen_encode(&txn, fps, times, 1000, &buf,
                                                &len) == 0);
                fprintf(stderr, "  info: 1000 ids in %zu bytes\n", len);
                EB_CHECK(len < 1000 * 18 + 32);
                free(buf);
        }

        EB_CHECK_INT(eb_state_seen_encode(&txn, &fp, &bad, 1, &buf, &len),
                     -EINVAL);
        EB_CHECK_INT(eb_state_seen_encode(&txn, &fp, &big, 1, &buf, &len),
                     -EINVAL);
        txn.session = 0;
        EB_CHECK_INT(eb_state_seen_encode(&txn, NULL, NULL, 0, &buf, &len),
                     -EINVAL);
        EB_CHECK(buf == NULL);
}

static int decode_rc(const void *buf, size_t len)
{
        struct eb_state_txn txn;
        struct eb_fp *fps = NULL;
        int64_t *times = NULL;
        size_t n = 7;
        int rc = eb_state_seen_decode(buf, len, &txn, &fps, &times, &n);

        if (rc) {
                /* nothing handed out on failure */
                EB_CHECK(fps == NULL && times == NULL && n == 0);
        }
        free(fps);
        free(times);
        return rc;
}

static void test_seen_garbage(void)
{
        struct eb_state_txn txn = {0xabcdef, 5, 4};
        struct eb_fp fps[20];
        int64_t times[20];
        unsigned char *buf = NULL;
        unsigned char *copy;
        size_t len, i;
        int bad = 0;

        make_ids(fps, times, 20, NOW_S);
        EB_REQUIRE(eb_state_seen_encode(&txn, fps, times, 20, &buf, &len) == 0);
        EB_CHECK_INT(decode_rc(buf, len), 0);
        EB_CHECK_INT(decode_rc(NULL, 0), -EINVAL);
        EB_CHECK_INT(decode_rc(buf, 0), -EINVAL);
        EB_CHECK_INT(decode_rc("{\"not\":\"binary\"}", 16), -EINVAL);

        /* every truncation is refused */
        for (i = 0; i < len; i++)
                if (decode_rc(buf, i) != -EINVAL)
                        bad++;
        EB_CHECK_INT(bad, 0);

        copy = eb_xmalloc(len + 1);
        memcpy(copy, buf, len);
        copy[len] = 0; /* trailing byte */
        EB_CHECK_INT(decode_rc(copy, len + 1), -EINVAL);
        copy[0] ^= 1; /* magic */
        EB_CHECK_INT(decode_rc(copy, len), -EINVAL);
        copy[0] ^= 1;
        copy[2] = 2; /* version */
        EB_CHECK_INT(decode_rc(copy, len), -EINVAL);
        copy[2] = 1;
        copy[3] = 0x80; /* unknown flag */
        EB_CHECK_INT(decode_rc(copy, len), -EINVAL);
        copy[3] = 0;
        memset(copy + 4, 0, 8); /* session 0 */
        EB_CHECK_INT(decode_rc(copy, len), -EINVAL);
        free(copy);
        free(buf);

        /* hand-made headers: seq 0, prev >= seq, huge count, overlong
         * varint, a time delta far out of range */
        {
                unsigned char h[64] = {0xEB, 0x5E, 1, 0, 0, 0,
                                       0,    0,    0, 0, 0, 1};
                size_t o;

                o = 12;
                h[o++] = 0; /* seq 0 */
                h[o++] = 0;
                h[o++] = 0;
                EB_CHECK_INT(decode_rc(h, o), -EINVAL);
                o = 12;
                h[o++] = 3; /* seq 3 */
                h[o++] = 3; /* prev 3 */
                h[o++] = 0;
                EB_CHECK_INT(decode_rc(h, o), -EINVAL);
                o = 12;
                h[o++] = 3;
                h[o++] = 2;
                h[o++] = 0; /* n = 0: valid, empty */
                EB_CHECK_INT(decode_rc(h, o), 0);
                o = 12;
                h[o++] = 3;
                h[o++] = 2;
                h[o++] = 0x7f; /* n = 127, no bytes for them */
                EB_CHECK_INT(decode_rc(h, o), -EINVAL);
                o = 12;
                for (i = 0; i < 11; i++)
                        h[o++] = 0xff; /* an 11-byte varint */
                h[o++] = 0;
                EB_CHECK_INT(decode_rc(h, o), -EINVAL);
                o = 12;
                h[o++] = 3;
                h[o++] = 2;
                h[o++] = 1; /* one id */
                memset(h + o, 0xaa, 16);
                o += 16;
                /* zigzag(2^41): a time out of range */
                h[o++] = 0x80;
                h[o++] = 0x80;
                h[o++] = 0x80;
                h[o++] = 0x80;
                h[o++] = 0x80;
                h[o++] = 0x80;
                h[o++] = 0x02;
                EB_CHECK_INT(decode_rc(h, o), -EINVAL);
        }

        /* random bytes behind a valid prefix never crash the decoder */
        {
                unsigned char r[300];
                int ok = 0;

                for (i = 0; i < 20000; i++) {
                        size_t l = (size_t)(rnd() % sizeof(r)), j;

                        for (j = 0; j < l; j++)
                                r[j] = (unsigned char)rnd();
                        if (l > 4) {
                                r[0] = 0xEB;
                                r[1] = 0x5E;
                                r[2] = 1;
                                r[3] = 0;
                        }
                        if (decode_rc(r, l) == 0)
                                ok++;
                }
                fprintf(stderr, "  info: %d of 20000 random records decoded\n",
                        ok);
        }

        /* valid records with a few bytes changed: decoded or refused,
         * never a crash, never more ids than the bytes can hold */
        {
                int ok = 0;

                make_ids(fps, times, 20, NOW_S);
                txn.session = 0xabcdef;
                EB_REQUIRE(eb_state_seen_encode(&txn, fps, times, 20, &buf,
                                                &len) == 0);
                copy = eb_xmalloc(len);
                for (i = 0; i < 20000; i++) {
                        struct eb_state_txn t;
                        struct eb_fp *d = NULL;
                        int64_t *tt = NULL;
                        size_t dn = 0, k, flips = 1 + rnd() % 3;

                        memcpy(copy, buf, len);
                        for (k = 0; k < flips; k++)
                                copy[rnd() % len] ^=
                                        (unsigned char)(1u << (rnd() % 8));
                        if (eb_state_seen_decode(copy, len, &t, &d, &tt, &dn) ==
                            0) {
                                ok++;
                                EB_CHECK(dn * 17 <= len);
                                EB_CHECK(t.seq > t.prev);
                        }
                        free(d);
                        free(tt);
                }
                fprintf(stderr, "  info: %d of 20000 mutated records decoded\n",
                        ok);
                free(copy);
                free(buf);
        }
}

static void test_seen_split(void)
{
        const size_t n = 120000;
        struct eb_fp *fps = eb_xcalloc(n, sizeof(*fps));
        int64_t *times = eb_xcalloc(n, sizeof(*times));
        struct eb_envelope *envs = NULL;
        struct eb_config cfg;
        eb_state_writer_t *w;
        size_t cnt = 0, i, at = 0;
        int mismatch = 0;

        cfg_init(&cfg);
        w = eb_state_writer_new(&cfg, 42);
        make_ids(fps, times, n, NOW_S);

        /* no open transaction */
        EB_CHECK_INT(eb_state_seen_records(w, fps, times, n, 0, &envs, &cnt),
                     -EINVAL);
        eb_state_writer_begin(w);
        EB_CHECK_INT(eb_state_seen_records(w, fps, times, n, 100, &envs, &cnt),
                     -EINVAL);

        /* 120k ids at ~18 bytes: three records of <= 900 KB */
        EB_REQUIRE(eb_state_seen_records(w, fps, times, n, 0, &envs, &cnt) ==
                   0);
        EB_CHECK_INT(cnt, 3);
        for (i = 0; i < cnt; i++) {
                struct eb_state_txn txn;
                struct eb_fp *d = NULL;
                int64_t *t = NULL;
                size_t dn = 0, j;

                EB_CHECK_STR(envs[i].topic, "evb.seen");
                EB_CHECK_STR(envs[i].key, "evb-main");
                EB_CHECK(envs[i].value_len <= EB_STATE_MAX_RECORD);
                EB_CHECK_INT(envs[i].header_cnt, 0);
                EB_REQUIRE(eb_state_seen_decode(envs[i].value,
                                                envs[i].value_len, &txn, &d, &t,
                                                &dn) == 0);
                EB_CHECK(txn.session == 42);
                EB_CHECK_INT(txn.seq, 1);
                for (j = 0; j < dn && at + j < n; j++)
                        if (d[j].hi != fps[at + j].hi ||
                            d[j].lo != fps[at + j].lo || t[j] != times[at + j])
                                mismatch++;
                at += dn;
                free(d);
                free(t);
                eb_envelope_fini(&envs[i]);
        }
        free(envs);
        EB_CHECK_INT(at, n);
        EB_CHECK_INT(mismatch, 0);

        /* tiny records: a few ids each, every id exactly once */
        EB_REQUIRE(eb_state_seen_records(w, fps, times, 100,
                                         EB_STATE_MIN_RECORD, &envs,
                                         &cnt) == 0);
        EB_CHECK(cnt > 10);
        at = 0;
        for (i = 0; i < cnt; i++) {
                struct eb_state_txn txn;
                struct eb_fp *d = NULL;
                int64_t *t = NULL;
                size_t dn = 0;

                EB_CHECK(envs[i].value_len <= EB_STATE_MIN_RECORD);
                EB_CHECK(eb_state_seen_decode(envs[i].value, envs[i].value_len,
                                              &txn, &d, &t, &dn) == 0);
                EB_CHECK(dn >= 1);
                if (dn && at < 100)
                        EB_CHECK(d[0].hi == fps[at].hi);
                at += dn;
                free(d);
                free(t);
                eb_envelope_fini(&envs[i]);
        }
        free(envs);
        EB_CHECK_INT(at, 100);

        /* no ids: still one record, carrying the stamp */
        EB_REQUIRE(eb_state_seen_records(w, NULL, NULL, 0, 0, &envs, &cnt) ==
                   0);
        EB_CHECK_INT(cnt, 1);
        EB_CHECK(envs[0].value_len < 32);
        eb_envelope_fini(&envs[0]);
        free(envs);

        /* a bad time anywhere refuses the batch */
        times[n / 2] = -5;
        EB_CHECK_INT(eb_state_seen_records(w, fps, times, n, 0, &envs, &cnt),
                     -EINVAL);
        EB_CHECK(envs == NULL && cnt == 0);
        eb_state_writer_free(w);
        free(fps);
        free(times);
}

/* ---- checkpoint records ------------------------------------------------ */

static void test_checkpoint_record(void)
{
        struct eb_config cfg;
        struct eb_envelope env;
        struct eb_state_txn txn;
        eb_state_writer_t *w;
        json_t *cp = json_pack("{s:s, s:i, s:[i,i]}", "cursor",
                               "abc\"d\xc3\xa9", "wm", 1700000000, "ids", 1, 2);
        json_t *got = NULL;
        char *source = NULL;
        int64_t ts = 0;

        cfg_init(&cfg);
        w = eb_state_writer_new(&cfg, 0xabc);
        EB_CHECK_INT(eb_state_checkpoint_record(w, "acme-close", cp, 5, &env),
                     -EINVAL); /* no open transaction */
        eb_state_writer_begin(w);
        eb_state_writer_committed(w);
        eb_state_writer_begin(w);
        EB_CHECK_INT(eb_state_checkpoint_record(w, "", cp, 5, &env), -EINVAL);
        EB_CHECK_INT(eb_state_checkpoint_record(w, "x", NULL, 5, &env),
                     -EINVAL);
        EB_REQUIRE(eb_state_checkpoint_record(w, "acme-close", cp,
                                              INT64_C(1700000000123),
                                              &env) == 0);
        EB_CHECK_STR(env.topic, "evb.checkpoints");
        EB_CHECK_STR(env.key, "acme-close");
        EB_CHECK_INT(env.key_len, 10);
        EB_CHECK(strstr(env.value, "\"w\":\"0000000000000abc\"") != NULL);
        EB_REQUIRE(eb_state_checkpoint_decode(env.value, env.value_len, &source,
                                              &got, &ts, &txn) == 0);
        EB_CHECK_STR(source, "acme-close");
        EB_CHECK(json_equal(got, cp));
        EB_CHECK_INT(ts, INT64_C(1700000000123));
        EB_CHECK(txn.session == 0xabc);
        EB_CHECK_INT(txn.seq, 2);
        EB_CHECK_INT(txn.prev, 1);
        free(source);
        json_decref(got);
        eb_envelope_fini(&env);
        eb_state_writer_free(w);
        json_decref(cp);
}

static int ck_rc(const char *s)
{
        struct eb_state_txn txn;
        char *source = NULL;
        json_t *cp = NULL;
        int64_t ts;
        int rc = eb_state_checkpoint_decode(s, s ? strlen(s) : 0, &source, &cp,
                                            &ts, &txn);

        if (rc)
                EB_CHECK(source == NULL && cp == NULL);
        free(source);
        json_decref(cp);
        return rc;
}

static void test_checkpoint_garbage(void)
{
        char *big;

        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{}}"), 0);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":null}"), 0);
        EB_CHECK_INT(ck_rc(NULL), -EINVAL);
        EB_CHECK_INT(ck_rc(""), -EINVAL);
        EB_CHECK_INT(ck_rc("not json"), -EINVAL);
        EB_CHECK_INT(ck_rc("[1,2]"), -EINVAL);
        EB_CHECK_INT(ck_rc("{\"checkpoint\":{}}"), -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"\",\"checkpoint\":{}}"), -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":7,\"checkpoint\":{}}"), -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\"}"), -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},\"ts\":\"x\"}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},\"v\":2}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"source\":\"b\","
                           "\"checkpoint\":{}}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},"
                           "\"w\":\"xyz\",\"seq\":2,\"prev\":1}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},"
                           "\"w\":\"000000000000000g\",\"seq\":2,\"prev\":1}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},"
                           "\"w\":\"0000000000000001\",\"seq\":0,\"prev\":0}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},"
                           "\"w\":\"0000000000000001\",\"seq\":2,\"prev\":2}"),
                     -EINVAL);
        EB_CHECK_INT(ck_rc("{\"source\":\"a\",\"checkpoint\":{},"
                           "\"w\":\"0000000000000001\",\"seq\":2}"),
                     -EINVAL);
        big = eb_xmalloc(EB_STATE_MAX_CHECKPOINT + 100);
        memset(big, ' ', EB_STATE_MAX_CHECKPOINT + 99);
        memcpy(big, "{\"source\":\"a\",\"checkpoint\":{}}", 30);
        big[EB_STATE_MAX_CHECKPOINT + 99] = '\0';
        EB_CHECK_INT(ck_rc(big), -EINVAL);
        free(big);
}

/* ---- the loader -------------------------------------------------------- */

/*
 * A scripted history: transactions of one or more writers, their seen
 * and checkpoint records collected in log order, then fed to a loader.
 */
struct history {
        struct eb_envelope *seen;
        size_t nseen;
        struct eb_envelope *cks;
        int32_t *ck_part;
        size_t ncks;
};

static void h_add_seen(struct history *h, const eb_state_writer_t *w,
                       const struct eb_fp *fps, const int64_t *times, size_t n,
                       size_t max_bytes)
{
        struct eb_envelope *envs = NULL;
        size_t cnt = 0, i;

        EB_CHECK(eb_state_seen_records(w, fps, times, n, max_bytes, &envs,
                                       &cnt) == 0);
        h->seen = eb_xrealloc(h->seen, (h->nseen + cnt) * sizeof(*h->seen));
        for (i = 0; i < cnt; i++)
                h->seen[h->nseen++] = envs[i];
        free(envs);
}

static void h_add_ck(struct history *h, const eb_state_writer_t *w,
                     const char *source, const char *cp_json, int64_t ts,
                     int32_t partition)
{
        json_t *cp = json_loads(cp_json, JSON_DECODE_ANY, NULL);

        h->cks = eb_xrealloc(h->cks, (h->ncks + 1) * sizeof(*h->cks));
        h->ck_part = eb_xrealloc(h->ck_part, (h->ncks + 1) * sizeof(int32_t));
        EB_CHECK(eb_state_checkpoint_record(w, source, cp, ts,
                                            &h->cks[h->ncks]) == 0);
        h->ck_part[h->ncks] = partition;
        h->ncks++;
        json_decref(cp);
}

/* A raw record (garbage, tombstone) on the checkpoint topic. */
static void h_add_ck_raw(struct history *h, const char *key, const char *value)
{
        struct eb_envelope *e;

        h->cks = eb_xrealloc(h->cks, (h->ncks + 1) * sizeof(*h->cks));
        h->ck_part = eb_xrealloc(h->ck_part, (h->ncks + 1) * sizeof(int32_t));
        e = &h->cks[h->ncks];
        memset(e, 0, sizeof(*e));
        e->key = key ? eb_xstrdup(key) : NULL;
        e->key_len = key ? strlen(key) : 0;
        e->value = value ? eb_xstrdup(value) : NULL;
        e->value_len = value ? strlen(value) : 0;
        h->ck_part[h->ncks] = 0;
        h->ncks++;
}

static void h_add_seen_raw(struct history *h, const void *value, size_t len)
{
        struct eb_envelope *e;

        h->seen = eb_xrealloc(h->seen, (h->nseen + 1) * sizeof(*h->seen));
        e = &h->seen[h->nseen++];
        memset(e, 0, sizeof(*e));
        e->value = eb_xmalloc(len ? len : 1);
        memcpy(e->value, value, len);
        e->value_len = len;
}

static void h_free(struct history *h)
{
        size_t i;

        for (i = 0; i < h->nseen; i++)
                eb_envelope_fini(&h->seen[i]);
        for (i = 0; i < h->ncks; i++)
                eb_envelope_fini(&h->cks[i]);
        free(h->seen);
        free(h->cks);
        free(h->ck_part);
        memset(h, 0, sizeof(*h));
}

static void h_load(const struct history *h, eb_dedupe_t *dd, int distrust,
                   json_t *cps, struct eb_state_restore_stats *st)
{
        eb_state_loader_t *ld = eb_state_loader_new(dd, NOW_S, distrust);
        size_t i;

        for (i = 0; i < h->nseen; i++)
                (void)eb_state_loader_seen(ld, h->seen[i].value,
                                           h->seen[i].value_len);
        eb_state_loader_seen_done(ld);
        for (i = 0; i < h->ncks; i++)
                (void)eb_state_loader_checkpoint(
                        ld, h->cks[i].key, h->cks[i].key_len, h->cks[i].value,
                        h->cks[i].value_len, h->ck_part[i], (int64_t)i);
        memset(st, 0, sizeof(*st));
        eb_state_loader_finish(ld, cps, st);
        eb_state_loader_free(ld);
}

static int has_all(const eb_dedupe_t *dd, const struct eb_fp *fps, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (!eb_dedupe_contains(dd, &fps[i]))
                        return 0;
        return 1;
}

static int has_none(const eb_dedupe_t *dd, const struct eb_fp *fps, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++)
                if (eb_dedupe_contains(dd, &fps[i]))
                        return 0;
        return 1;
}

static const char *cp_str(json_t *cps, const char *source)
{
        return json_string_value(
                json_object_get(json_object_get(cps, source), "c"));
}

#define N 50

/*
 * txn1 committed (A, x=c1), txn2 aborted (B, x=c2, split in 5 records),
 * txn3 committed (C, y=c3), txn4 = the tail (D, x=c4).
 */
static void build_abort_history(struct history *h, eb_state_writer_t *w,
                                struct eb_fp ids[4][N], int64_t times[4][N])
{
        int t;

        for (t = 0; t < 4; t++)
                make_ids(ids[t], times[t], N, NOW_S - 3600);
        eb_state_writer_begin(w);
        h_add_seen(h, w, ids[0], times[0], N, 0);
        h_add_ck(h, w, "x", "{\"c\":\"c1\"}", 1000, 0);
        eb_state_writer_committed(w);

        eb_state_writer_begin(w);
        h_add_seen(h, w, ids[1], times[1], N, EB_STATE_MIN_RECORD * 2);
        h_add_ck(h, w, "x", "{\"c\":\"c2\"}", 2000, 0);
        eb_state_writer_aborted(w);

        eb_state_writer_begin(w);
        h_add_seen(h, w, ids[2], times[2], N, 0);
        h_add_ck(h, w, "y", "{\"c\":\"c3\"}", 3000, 0);
        eb_state_writer_committed(w);

        eb_state_writer_begin(w);
        h_add_seen(h, w, ids[3], times[3], N, 0);
        h_add_ck(h, w, "x", "{\"c\":\"c4\"}", 4000, 0);
        eb_state_writer_committed(w);
}

static void test_loader_aborted(void)
{
        struct eb_fp ids[4][N];
        int64_t times[4][N];
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        struct history h;
        eb_state_writer_t *w;
        eb_dedupe_t *dd;
        json_t *cps;

        memset(&h, 0, sizeof(h));
        cfg_init(&cfg);
        w = eb_state_writer_new(&cfg, 7);
        build_abort_history(&h, w, ids, times);

        /* trusting the tail (the default) */
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 0, cps, &st);
        EB_CHECK(has_all(dd, ids[0], N));
        EB_CHECK(has_none(dd, ids[1], N));
        EB_CHECK(has_all(dd, ids[2], N));
        EB_CHECK(has_all(dd, ids[3], N));
        EB_CHECK_INT(eb_dedupe_size(dd), 3 * N);
        EB_CHECK_STR(cp_str(cps, "x"), "c4");
        EB_CHECK_STR(cp_str(cps, "y"), "c3");
        EB_CHECK_INT(json_object_size(cps), 2);
        EB_CHECK_INT(st.ids, 3 * N);
        EB_CHECK_INT(st.ids_aborted, N);
        EB_CHECK_INT(st.txns_aborted, 1);
        EB_CHECK_INT(st.checkpoints_aborted, 1);
        EB_CHECK_INT(st.checkpoints, 2);
        EB_CHECK_INT(st.tails, 1);
        EB_CHECK_INT(st.garbage, 0);
        EB_CHECK_INT(st.assumed_committed, 0);
        EB_CHECK(st.seen_records > 4); /* txn2 was split */
        EB_CHECK_INT(st.checkpoint_records, 4);
        EB_CHECK_INT(st.records, st.seen_records + 4);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* distrusting it: D and c4 are left out, x falls back to c1 */
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 1, cps, &st);
        EB_CHECK(has_all(dd, ids[0], N));
        EB_CHECK(has_none(dd, ids[1], N));
        EB_CHECK(has_all(dd, ids[2], N));
        EB_CHECK(has_none(dd, ids[3], N));
        EB_CHECK_STR(cp_str(cps, "x"), "c1");
        EB_CHECK_STR(cp_str(cps, "y"), "c3");
        EB_CHECK_INT(st.ids_unconfirmed, N);
        EB_CHECK_INT(st.checkpoints_unconfirmed, 1);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* an empty transaction (a seal) confirms the tail */
        eb_state_writer_begin(w);
        h_add_seen(&h, w, NULL, NULL, 0, 0);
        eb_state_writer_committed(w);
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 1, cps, &st);
        EB_CHECK(has_all(dd, ids[3], N));
        EB_CHECK_STR(cp_str(cps, "x"), "c4");
        EB_CHECK_INT(st.ids_unconfirmed, 0);
        EB_CHECK_INT(st.tails, 1); /* the seal itself, empty */
        json_decref(cps);
        eb_dedupe_free(dd);

        h_free(&h);
        eb_state_writer_free(w);
}

/* An aborted attempt, then its redo; aborts at the end are the tail. */
static void test_loader_abort_redo_and_sessions(void)
{
        struct eb_fp a[N], b[N], c[N];
        int64_t ta[N], tb[N], tc[N];
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        struct history h;
        eb_state_writer_t *old, *cur;
        eb_dedupe_t *dd;
        json_t *cps;

        memset(&h, 0, sizeof(h));
        cfg_init(&cfg);
        make_ids(a, ta, N, NOW_S);
        make_ids(b, tb, N, NOW_S);
        make_ids(c, tc, N, NOW_S);
        old = eb_state_writer_new(&cfg, 100);
        cur = eb_state_writer_new(&cfg, 200);

        /* old session: batch a aborted twice, then committed */
        eb_state_writer_begin(old);
        h_add_seen(&h, old, a, ta, N, 0);
        h_add_ck(&h, old, "s", "{\"c\":\"a1\"}", 10, 0);
        eb_state_writer_aborted(old);
        eb_state_writer_begin(old);
        h_add_seen(&h, old, a, ta, N, 0);
        h_add_ck(&h, old, "s", "{\"c\":\"a2\"}", 11, 0);
        eb_state_writer_aborted(old);
        eb_state_writer_begin(old);
        h_add_seen(&h, old, a, ta, N, 0);
        h_add_ck(&h, old, "s", "{\"c\":\"a3\"}", 12, 0);
        eb_state_writer_committed(old);
        /* old session's tail: batch b (committed, but nobody says so) */
        eb_state_writer_begin(old);
        h_add_seen(&h, old, b, tb, N, 0);
        h_add_ck(&h, old, "s", "{\"c\":\"b\"}", 13, 0);
        eb_state_writer_committed(old);
        /* new session (after a restart): batch c, then a seal */
        eb_state_writer_begin(cur);
        h_add_seen(&h, cur, c, tc, N, 0);
        h_add_ck(&h, cur, "t", "{\"c\":\"c\"}", 14, 0);
        eb_state_writer_committed(cur);
        eb_state_writer_begin(cur);
        h_add_seen(&h, cur, NULL, NULL, 0, 0);
        eb_state_writer_committed(cur);

        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 0, cps, &st);
        EB_CHECK(has_all(dd, a, N));
        EB_CHECK(has_all(dd, b, N));
        EB_CHECK(has_all(dd, c, N));
        EB_CHECK_INT(st.ids, 3 * N);
        EB_CHECK_INT(st.ids_aborted, 2 * N);
        EB_CHECK_INT(st.txns_aborted, 2);
        EB_CHECK_INT(st.checkpoints_aborted, 2);
        EB_CHECK_INT(st.tails, 2);
        EB_CHECK_STR(cp_str(cps, "s"), "b");
        EB_CHECK_STR(cp_str(cps, "t"), "c");
        json_decref(cps);
        eb_dedupe_free(dd);

        /* distrusting: the old session's tail (b) is left out, the new
         * one's data is confirmed by its seal */
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 1, cps, &st);
        EB_CHECK(has_all(dd, a, N));
        EB_CHECK(has_none(dd, b, N));
        EB_CHECK(has_all(dd, c, N));
        EB_CHECK_STR(cp_str(cps, "s"), "a3");
        EB_CHECK_STR(cp_str(cps, "t"), "c");
        json_decref(cps);
        eb_dedupe_free(dd);

        h_free(&h);
        eb_state_writer_free(old);
        eb_state_writer_free(cur);
}

/* Expiry, duplicates across transactions, garbage, tombstones, key
 * mismatches, unstamped and unknown-session checkpoints, ordering. */
static void test_loader_misc(void)
{
        struct eb_fp a[4];
        int64_t ta[4] = {NOW_S - WINDOW - 10, NOW_S - WINDOW + 10, NOW_S,
                         NOW_S + 5};
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        struct history h;
        eb_state_writer_t *w, *ghost;
        eb_dedupe_t *dd;
        json_t *cps;
        size_t i;

        memset(&h, 0, sizeof(h));
        cfg_init(&cfg);
        for (i = 0; i < 4; i++) {
                a[i].hi = rnd();
                a[i].lo = rnd();
        }
        w = eb_state_writer_new(&cfg, 300);
        ghost = eb_state_writer_new(&cfg, 999); /* no .seen records */

        h_add_seen_raw(&h, "garbage", 7);
        eb_state_writer_begin(w);
        h_add_seen(&h, w, a, ta, 4, 0);
        h_add_ck(&h, w, "p", "{\"c\":\"p1\"}", 100, 0);
        h_add_ck(&h, w, "q", "{\"c\":\"q1\"}", 100, 0);
        h_add_ck(&h, w, "r", "{\"c\":\"r1\"}", 500, 1);
        eb_state_writer_committed(w);
        eb_state_writer_begin(w);
        h_add_seen(&h, w, a + 2, ta + 2, 1, 0);         /* a duplicate id */
        h_add_ck(&h, w, "p", "{\"c\":\"p2\"}", 50, 0);  /* same partition:
                                                          order wins */
        h_add_ck(&h, w, "r", "{\"c\":\"r2\"}", 400, 2); /* other partition,
                                                          older: loses */
        eb_state_writer_committed(w);
        h_add_seen_raw(&h, "\xeb\x5e\x01\x00", 4); /* truncated */
        h_add_ck_raw(&h, "q", NULL);               /* tombstone */
        h_add_ck_raw(&h, "u", "{\"source\":\"u\",\"checkpoint\":7}");
        h_add_ck_raw(&h, "v", "{\"source\":\"other\",\"checkpoint\":7}");
        h_add_ck_raw(&h, "z", "][");
        h_add_ck_raw(&h, NULL, NULL);
        eb_state_writer_begin(ghost);
        h_add_ck(&h, ghost, "g", "{\"c\":\"g\"}", 1, 0);

        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 0, cps, &st);
        EB_CHECK(!eb_dedupe_contains(dd, &a[0])); /* expired */
        EB_CHECK(eb_dedupe_contains(dd, &a[1]));
        EB_CHECK(eb_dedupe_contains(dd, &a[2]));
        EB_CHECK(eb_dedupe_contains(dd, &a[3]));
        EB_CHECK_INT(st.ids, 3);
        EB_CHECK_INT(st.ids_expired, 1);
        EB_CHECK_INT(st.ids_duplicate, 1);
        EB_CHECK_INT(st.garbage, 5); /* 2 seen + 3 checkpoint */
        EB_CHECK_STR(cp_str(cps, "p"), "p2");
        EB_CHECK(json_object_get(cps, "q") == NULL);
        EB_CHECK_STR(cp_str(cps, "r"), "r1");
        EB_CHECK_INT(json_integer_value(json_object_get(cps, "u")), 7);
        EB_CHECK(json_object_get(cps, "v") == NULL);
        EB_CHECK(json_object_get(cps, "other") == NULL);
        EB_CHECK_STR(cp_str(cps, "g"), "g"); /* unknown session: trusted */
        EB_CHECK_INT(st.checkpoints, 4);
        json_decref(cps);
        eb_dedupe_free(dd);

        /* distrust: the ghost's checkpoint has no .seen record at all:
         * unknown, still trusted (old enough for its ids to have expired,
         * or written by something else); w's tail is its second txn */
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 1, cps, &st);
        EB_CHECK_STR(cp_str(cps, "p"), "p1");
        EB_CHECK_STR(cp_str(cps, "g"), "g");
        json_decref(cps);
        eb_dedupe_free(dd);

        h_free(&h);
        eb_state_writer_free(w);
        eb_state_writer_free(ghost);
}

/* Records of one session read out of order (e.g. .seen was
 * repartitioned while it ran): nothing is lost, the undecidable ones are
 * counted. */
static void test_loader_out_of_order(void)
{
        struct eb_fp a[N], b[N], c[N];
        int64_t ta[N], tb[N], tc[N];
        struct eb_state_restore_stats st;
        struct eb_config cfg;
        struct history h;
        struct eb_envelope tmp;
        eb_state_writer_t *w;
        eb_dedupe_t *dd;
        json_t *cps;

        memset(&h, 0, sizeof(h));
        cfg_init(&cfg);
        make_ids(a, ta, N, NOW_S);
        make_ids(b, tb, N, NOW_S);
        make_ids(c, tc, N, NOW_S);
        w = eb_state_writer_new(&cfg, 5);
        eb_state_writer_begin(w);
        h_add_seen(&h, w, a, ta, N, 0);
        eb_state_writer_committed(w);
        eb_state_writer_begin(w);
        h_add_seen(&h, w, b, tb, N, 0);
        eb_state_writer_committed(w);
        eb_state_writer_begin(w);
        h_add_seen(&h, w, c, tc, N, 0);
        eb_state_writer_committed(w);
        /* read as 3, 1, 2 */
        tmp = h.seen[2];
        h.seen[2] = h.seen[1];
        h.seen[1] = h.seen[0];
        h.seen[0] = tmp;
        dd = eb_dedupe_new(10000, WINDOW);
        cps = json_object();
        h_load(&h, dd, 0, cps, &st);
        EB_CHECK(has_all(dd, a, N));
        EB_CHECK(has_all(dd, b, N));
        EB_CHECK(has_all(dd, c, N));
        EB_CHECK(st.assumed_committed >= 2);
        EB_CHECK_INT(st.ids_aborted, 0);
        json_decref(cps);
        eb_dedupe_free(dd);
        h_free(&h);
        eb_state_writer_free(w);
}

int main(void)
{
        eb_log_level = EB_LOG_ERROR;
        EB_RUN(test_names);
        EB_RUN(test_writer);
        EB_RUN(test_seen_round_trip);
        EB_RUN(test_seen_garbage);
        EB_RUN(test_seen_split);
        EB_RUN(test_checkpoint_record);
        EB_RUN(test_checkpoint_garbage);
        EB_RUN(test_loader_aborted);
        EB_RUN(test_loader_abort_redo_and_sessions);
        EB_RUN(test_loader_misc);
        EB_RUN(test_loader_out_of_order);
        return eb_test_summary();
}
