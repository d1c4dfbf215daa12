/*
 * eb_poller against the simulator with a sink that fails on purpose.
 *
 * The contract under test: a checkpoint moves only when the sink has
 * acknowledged the page behind it; a failed publish rolls the walk back
 * and the same events are offered again, so nothing is lost; a failed
 * upstream request (injected 500s) is retried without losing the
 * position. The sink here dedupes by (source, id, version) the way the
 * pipeline does, and counts how often each event was offered.
 */
#include "eb_config.h"
#include "eb_http.h"
#include "eb_poller.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tloop.h"
#include "sim_harness.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>

static struct event_base *base;

struct fake_sink {
        json_t *seen; /* dedupe key -> times accepted (1 expected) */
        int publishes;
        int fail_every; /* fail every Nth publish */
        int failed;
        json_t *cp_at_fail; /* checkpoints (by source) offered on failure */
};

static int publish(void *opaque, const struct eb_source_cfg *src,
                   struct eb_event **evts, size_t cnt, json_t *cp,
                   eb_publish_done_cb *done, void *arg)
{
        struct fake_sink *fs = opaque;
        int err = 0;
        size_t i;

        (void)cp;
        fs->publishes++;
        if (fs->fail_every && fs->publishes % fs->fail_every == 0 && cnt) {
                /* Kafka said no: nothing of this page is kept. */
                err = -EIO;
                fs->failed++;
        } else {
                for (i = 0; i < cnt; i++) {
                        char *k = eb_event_dedupe_key(evts[i], NULL);

                        /* The real pipeline drops repeats (overlap); what
                         * matters is that each is accepted at least once
                         * and that accepted ones are counted. */
                        eb_tjson_bump(fs->seen, k);
                        free(k);
                }
        }
        (void)src;
        eb_events_free(evts, cnt);
        eb_tsettle_later(base, done, arg, err);
        return 0;
}

/* Every current version in the truth was accepted by the sink. */
static int all_accepted(struct eb_sim *sim, struct fake_sink *fs, int *missing)
{
        int miss = eb_tmissing(sim, "", fs->seen, 1, NULL);

        if (miss < 0)
                return 0;
        *missing = miss;
        return miss == 0;
}

static void test_failures_lose_nothing(void)
{
        const char *args[] = {"--seed",
                              "3",
                              "--accounts",
                              "kommo=1,close=1,kota=1",
                              "--backlog",
                              "700",
                              "--backlog-span",
                              "2h",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--faults",
                              "500@every=4",
                              NULL};
        struct eb_trig t;
        struct fake_sink fs;
        struct eb_sink sink;
        struct eb_poller_opts opts;
        char json[4096];
        const char *names[] = {"kommo-1", "close-1", "kota-1"};
        int i, missing = -1, rounds;

        memset(&fs, 0, sizeof(fs));
        fs.seen = json_object();
        fs.fail_every = 3;
        EB_REQUIRE(eb_trig_sim(&t, args) == 0);
        snprintf(json, sizeof(json),
                 "{\"kafka\":{},\"sources\":["
                 "{\"name\":\"kommo-1\",\"provider\":\"kommo\","
                 "\"base_url\":\"%s\",\"credentials\":{\"token\":\"%s\"},"
                 "\"poll\":{\"interval\":\"300ms\",\"start\":\"1d\"}},"
                 "{\"name\":\"close-1\",\"provider\":\"close\","
                 "\"base_url\":\"%s\",\"credentials\":{\"api_key\":\"%s\"},"
                 "\"poll\":{\"interval\":\"300ms\",\"start\":\"1d\"}},"
                 "{\"name\":\"kota-1\",\"provider\":\"kota\","
                 "\"base_url\":\"%s\",\"credentials\":{\"api_key\":\"%s\"},"
                 "\"poll\":{\"interval\":\"300ms\",\"start\":\"1d\"}}]}",
                 eb_sim_str(&t.sim, "kommo-1", "base_url"),
                 eb_sim_str(&t.sim, "kommo-1", "credentials.token"),
                 eb_sim_str(&t.sim, "close-1", "base_url"),
                 eb_sim_str(&t.sim, "close-1", "credentials.api_key"),
                 eb_sim_str(&t.sim, "kota-1", "base_url"),
                 eb_sim_str(&t.sim, "kota-1", "credentials.api_key"));
        sink.publish = publish;
        sink.opaque = &fs;
        opts = eb_trig_fast;
        EB_REQUIRE(eb_trig_poll(&t, base, json, &sink, &opts) == 0);
        for (rounds = 0; rounds < EB_T_TMOUT(60); rounds++) {
                eb_trun_for(base, 500);
                if (all_accepted(&t.sim, &fs, &missing))
                        break;
        }
        EB_CHECK_INT(missing, 0);
        EB_CHECK(fs.failed >= 3);
        for (i = 0; i < 3; i++) {
                const struct eb_source_stats *st =
                        eb_poller_stats(t.p, names[i]);
                EB_REQUIRE(st != NULL);
                /* Injected 500s were met and retried. */
                EB_CHECK(st->errors_5xx >= 1);
                EB_CHECK(eb_poller_checkpoint(t.p, names[i]) != NULL);
        }
        eb_poller_stop(t.p);
        eb_trun_for(base, 300);
        EB_CHECK(eb_poller_idle(t.p));
        eb_trig_stop(&t, base);
        json_decref(fs.seen);
}

/* One Kota source, kota-1 of @p sim, polled every @p interval. */
static struct eb_config *kota_config(struct eb_sim *sim, const char *interval)
{
        char json[2048], err[512];

        snprintf(json, sizeof(json),
                 "{\"sources\":[{\"name\":\"kota-1\",\"provider\":\"kota\","
                 "\"base_url\":\"%s\",\"credentials\":{\"api_key\":\"%s\"},"
                 "\"poll\":{\"interval\":\"%s\",\"start\":\"1d\"}}]}",
                 eb_sim_str(sim, "kota-1", "base_url"),
                 eb_sim_str(sim, "kota-1", "credentials.api_key"), interval);
        return eb_config_load_string(json, err, sizeof(err));
}

/* A failed publish leaves the committed checkpoint where it was. */
struct cp_sink {
        int calls;
        int cp_calls;    /* publishes that carried a checkpoint */
        json_t *offered; /* checkpoint offered with the failing publish */
};

static int publish_fail_second(void *opaque, const struct eb_source_cfg *src,
                               struct eb_event **evts, size_t cnt, json_t *cp,
                               eb_publish_done_cb *done, void *arg)
{
        struct cp_sink *cs = opaque;
        int err = 0;

        (void)src;
        cs->calls++;
        /* The second that moves the checkpoint fails: pages are gathered
         * into parts of publish_max_events, and only a walk's last part
         * of a gathering carries the checkpoint. */
        if (cp && ++cs->cp_calls == 2) {
                err = -EIO;
                cs->offered = json_deep_copy(cp);
        }
        eb_events_free(evts, cnt);
        eb_tsettle_later(base, done, arg, err);
        return 0;
}

static void test_checkpoint_waits_for_ack(void)
{
        const char *args[] = {"--seed",    "9",   "--accounts", "kota=1",
                              "--backlog", "350", "--rate",     "0",
                              "--limits",  "off", NULL};
        struct eb_sim sim;
        struct cp_sink cs;
        struct eb_sink sink;
        struct eb_poller_opts opts;
        struct eb_config *cfg;
        eb_http_t *http;
        eb_poller_t *p;
        char err[512];
        json_t *before = NULL, *after;
        int i, calls;

        memset(&cs, 0, sizeof(cs));
        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        cfg = kota_config(&sim, "1h");
        EB_REQUIRE(cfg != NULL);
        http = eb_http_new(base, err, sizeof(err));
        sink.publish = publish_fail_second;
        sink.opaque = &cs;
        memset(&opts, 0, sizeof(opts));
        opts.backoff_min_ms = 400; /* time to look between fail and retry */
        opts.backoff_max_ms = 400;
        opts.publish_max_events = 100;
        p = eb_poller_new(base, http, &sink, &opts);
        EB_REQUIRE(eb_poller_add(p, &cfg->sources[0], NULL, err, sizeof(err)) ==
                   0);
        /* Run until the second checkpoint's publish has failed. */
        for (i = 0; i < 200 && !cs.offered; i++)
                eb_trun_for(base, 20);
        EB_REQUIRE(cs.offered != NULL);
        calls = cs.calls;
        eb_trun_for(base, 20);
        before = json_deep_copy(eb_poller_checkpoint(p, "kota-1"));
        EB_REQUIRE(before != NULL && cs.offered != NULL);
        /* The failed page's checkpoint was offered but not committed. */
        EB_CHECK(!json_equal(before, cs.offered));
        /* After the retry succeeds, the checkpoint moves on to it (once
         * that publish has settled, not when it is handed over). */
        after = eb_poller_checkpoint(p, "kota-1");
        for (i = 0; i < 500 && after && json_equal(before, after); i++) {
                eb_trun_for(base, 20);
                after = eb_poller_checkpoint(p, "kota-1");
        }
        EB_CHECK(after != NULL && !json_equal(before, after));
        EB_CHECK(cs.calls > calls);
        json_decref(before);
        json_decref(cs.offered);
        eb_poller_stop(p);
        eb_trun_for(base, 200);
        eb_poller_free(p);
        eb_http_free(http);
        eb_config_free(cfg);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

/* Run the loop until @p name has a request in flight (or 1.5 s). */
static void wait_fetching(eb_poller_t *p, const char *name)
{
        int i;

        for (i = 0;
             i < 300 && eb_poller_stats(p, name)->state != EB_SRC_FETCHING; i++)
                eb_trun_for(base, 5);
}

/* A source restarted (reload, shard handed back and forth) while its
 * request runs: the upstream is still serving that request, so the new
 * incarnation waits for it; the account never sees two at once. */
static void test_restart_never_overlaps(void)
{
        const char *args[] = {"--seed",    "5",   "--accounts",   "kota=1",
                              "--backlog", "40",  "--rate",       "0",
                              "--limits",  "off", "--latency-ms", "300",
                              NULL};
        struct eb_sim sim;
        struct fake_sink fs;
        struct eb_sink sink;
        struct eb_config *cfg;
        eb_http_t *http;
        eb_poller_t *p;
        json_t *stats, *acct;
        char err[512];
        int i, missing = -1;

        memset(&fs, 0, sizeof(fs));
        fs.seen = json_object();
        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        cfg = kota_config(&sim, "100ms");
        EB_REQUIRE(cfg != NULL);
        http = eb_http_new(base, err, sizeof(err));
        sink.publish = publish;
        sink.opaque = &fs;
        p = eb_poller_new(base, http, &sink, NULL);
        EB_REQUIRE(eb_poller_add(p, &cfg->sources[0], NULL, err, sizeof(err)) ==
                   0);
        wait_fetching(p, "kota-1");
        EB_REQUIRE(eb_poller_stats(p, "kota-1")->state == EB_SRC_FETCHING);
        /* Restart it mid-request, twice over the run. */
        eb_poller_remove(p, "kota-1");
        EB_CHECK(eb_poller_busy(p, "kota-1"));
        EB_CHECK(eb_poller_stats(p, "kota-1") == NULL);
        EB_REQUIRE(eb_poller_add(p, &cfg->sources[0], NULL, err, sizeof(err)) ==
                   0);
        eb_trun_for(base, 450);
        wait_fetching(p, "kota-1");
        eb_poller_remove(p, "kota-1");
        EB_REQUIRE(eb_poller_add(p, &cfg->sources[0], NULL, err, sizeof(err)) ==
                   0);
        for (i = 0; i < EB_T_TMOUT(20) * 10; i++) {
                eb_trun_for(base, 100);
                if (all_accepted(&sim, &fs, &missing))
                        break;
        }
        EB_CHECK_INT(missing, 0);
        stats = eb_sim_get_json(&sim, "/_sim/stats");
        EB_REQUIRE(stats != NULL);
        acct = json_array_get(json_object_get(stats, "accounts"), 0);
        EB_CHECK_INT(json_integer_value(json_object_get(acct, "overlaps")), 0);
        EB_CHECK_INT(
                json_integer_value(json_object_get(acct, "max_concurrent")), 1);
        json_decref(stats);

        /* A deadline passed: cancel drops the request at once. */
        wait_fetching(p, "kota-1");
        EB_REQUIRE(eb_poller_stats(p, "kota-1")->state == EB_SRC_FETCHING);
        eb_poller_remove(p, "kota-1");
        EB_CHECK(eb_poller_busy(p, "kota-1"));
        eb_poller_cancel(p, "kota-1");
        EB_CHECK(!eb_poller_busy(p, "kota-1"));
        EB_CHECK(eb_poller_idle(p));
        eb_poller_free(p);
        eb_http_free(http);
        eb_config_free(cfg);
        json_decref(fs.seen);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

/*
 * Slices: a backlog ten times poll.max_buffered_events, Kommo and Close
 * (newest first). Every event arrives; no walk hands over more than the
 * cap between two checkpoints, no publish more than publish_max_events;
 * one source's new events arrive oldest first across the whole backfill, and
 * the checkpoint moves many times on the way.
 */
struct slice_sink {
        json_t *seen;
        const char *names[2];
        size_t held[2], max_held[2], max_publish;
        int64_t last_ms[2];
        int disorder, publishes;
};

static int publish_sliced(void *opaque, const struct eb_source_cfg *src,
                          struct eb_event **evts, size_t cnt, json_t *cp,
                          eb_publish_done_cb *done, void *arg)
{
        struct slice_sink *ss = opaque;
        int k = strcmp(src->name, ss->names[0]) ? 1 : 0;
        size_t i;

        ss->publishes++;
        if (cnt > ss->max_publish)
                ss->max_publish = cnt;
        ss->held[k] += cnt;
        if (ss->held[k] > ss->max_held[k])
                ss->max_held[k] = ss->held[k];
        if (cp)
                ss->held[k] = 0;
        for (i = 0; i < cnt; i++) {
                char *key = eb_event_dedupe_key(evts[i], NULL);

                /* Repeats (the overlap of a walk after the backlog) are
                 * the pipeline's to drop; order is about new events. */
                if (!json_object_get(ss->seen, key)) {
                        if (evts[i]->time_ms < ss->last_ms[k])
                                ss->disorder++;
                        ss->last_ms[k] = evts[i]->time_ms;
                }
                json_object_set_new(ss->seen, key, json_true());
                free(key);
                eb_event_free(evts[i]);
        }
        free(evts);
        eb_tsettle_later(base, done, arg, 0);
        return 0;
}

static void test_slices_bound_walks(void)
{
        const char *args[] = {"--seed",
                              "5",
                              "--accounts",
                              "kommo=1,close=1",
                              "--backlog",
                              "3000",
                              "--backlog-span",
                              "2d",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--consolidate",
                              "0",
                              NULL};
        struct eb_trig t;
        struct slice_sink ss;
        struct fake_sink fs;
        struct eb_sink sink;
        struct eb_poller_opts opts;
        char json[4096];
        int i, missing = -1, rounds;

        memset(&ss, 0, sizeof(ss));
        ss.seen = json_object();
        ss.names[0] = "kommo-1";
        ss.names[1] = "close-1";
        EB_REQUIRE(eb_trig_sim(&t, args) == 0);
        snprintf(json, sizeof(json),
                 "{\"kafka\":{},\"sources\":["
                 "{\"name\":\"kommo-1\",\"provider\":\"kommo\","
                 "\"base_url\":\"%s\",\"credentials\":{\"token\":\"%s\"},"
                 "\"rate_limit\":{\"rps\":200},"
                 "\"poll\":{\"interval\":\"300ms\",\"start\":\"3d\","
                 "\"max_buffered_events\":300}},"
                 "{\"name\":\"close-1\",\"provider\":\"close\","
                 "\"base_url\":\"%s\",\"credentials\":{\"api_key\":\"%s\"},"
                 "\"rate_limit\":{\"rps\":200},"
                 "\"poll\":{\"interval\":\"300ms\",\"start\":\"3d\","
                 "\"max_buffered_events\":300}}]}",
                 eb_sim_str(&t.sim, "kommo-1", "base_url"),
                 eb_sim_str(&t.sim, "kommo-1", "credentials.token"),
                 eb_sim_str(&t.sim, "close-1", "base_url"),
                 eb_sim_str(&t.sim, "close-1", "credentials.api_key"));
        sink.publish = publish_sliced;
        sink.opaque = &ss;
        opts = eb_trig_fast;
        opts.publish_max_events = 100;
        EB_REQUIRE(eb_trig_poll(&t, base, json, &sink, &opts) == 0);
        memset(&fs, 0, sizeof(fs));
        fs.seen = ss.seen;
        for (rounds = 0; rounds < EB_T_TMOUT(60); rounds++) {
                eb_trun_for(base, 500);
                if (all_accepted(&t.sim, &fs, &missing))
                        break;
        }
        EB_CHECK_INT(missing, 0);
        EB_CHECK_INT(ss.disorder, 0);
        EB_CHECK(ss.max_publish <= 100);
        for (i = 0; i < 2; i++) {
                const struct eb_source_stats *st =
                        eb_poller_stats(t.p, ss.names[i]);

                EB_REQUIRE(st != NULL);
                EB_CHECK(ss.max_held[i] > 0 && ss.max_held[i] <= 300);
                EB_CHECK(st->checkpoints >= 10);
                EB_CHECK(st->slice_splits >= 1);
                EB_CHECK_INT(st->errors_publish, 0);
        }
        eb_poller_stop(t.p);
        eb_trun_for(base, 300);
        EB_CHECK(eb_poller_idle(t.p));
        eb_trig_stop(&t, base);
        json_decref(ss.seen);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        eb_log_set_level(EB_LOG_ERROR);
        base = event_base_new();
        EB_RUN(test_failures_lose_nothing);
        EB_RUN(test_checkpoint_waits_for_ack);
        EB_RUN(test_restart_never_overlaps);
        EB_RUN(test_slices_bound_walks);
        event_base_free(base);
        curl_global_cleanup();
        eb_log_shutdown();
        return eb_test_summary();
}
