/*
 * The Kommo walk against the strict simulator (issue 17): same-second
 * events in a new order on every request (tie_shuffle) must not be lost
 * at page boundaries, and the overlap is re-read without downloading it
 * again on every walk (requests counted by the simulator), while events
 * that become visible late are still caught.
 *
 * The sink accepts every publish at once and counts, per dedupe identity,
 * how often it saw an event, and per publish how many events were new: a
 * walk's publish needs max(1, ceil(new / page_size)) pages.
 */
#include "eb_config.h"
#include "eb_http.h"
#include "eb_poller.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tloop.h"
#include "sim_harness.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct event_base *base;

struct sink {
        json_t *seen;      /* dedupe identity -> times accepted */
        long page_size;    /* of the source, for pages_needed */
        long pages_needed; /* sum over publishes of max(1, ceil(new/L)) */
        long publishes;
};

static int publish(void *opaque, const struct eb_source_cfg *src,
                   struct eb_event **evts, size_t cnt, json_t *cp,
                   eb_publish_done_cb *done, void *arg)
{
        struct sink *sk = opaque;
        long fresh = 0;
        size_t i;

        (void)src;
        (void)cp;
        for (i = 0; i < cnt; i++) {
                char *k = eb_event_dedupe_key(evts[i], NULL);
                json_t *n = json_object_get(sk->seen, k);

                if (!n)
                        fresh++;
                json_object_set_new(
                        sk->seen, k,
                        json_integer(n ? json_integer_value(n) + 1 : 1));
                free(k);
        }
        sk->publishes++;
        sk->pages_needed +=
                fresh ? (fresh + sk->page_size - 1) / sk->page_size : 1;
        eb_events_free(evts, cnt);
        eb_tsettle_later(base, done, arg, 0);
        return 0;
}

struct rig {
        struct eb_trig t;
        struct sink sk;
};

/* The simulator with @p args (one Kommo account), and a source kommo-1
 * with @p poll (the inside of its "poll" object) and page size @p ps. */
static int rig_start(struct rig *r, const char *const *args, const char *poll,
                     int ps)
{
        struct eb_sink sink = {.publish = publish};
        char json[4096];

        if (eb_trig_sim(&r->t, args) < 0)
                return -1;
        memset(&r->sk, 0, sizeof(r->sk));
        r->sk.seen = json_object();
        r->sk.page_size = ps;
        sink.opaque = &r->sk;
        snprintf(json, sizeof(json),
                 "{\"sources\":[{\"name\":\"kommo-1\",\"provider\":"
                 "\"kommo\",\"base_url\":\"%s/kommo/kommo-1\","
                 "\"credentials\":{\"token\":\"kommo-token-kommo-1\"},"
                 "\"poll\":{%s,\"page_size\":%d}}]}",
                 r->t.sim.origin, poll, ps);
        return eb_trig_poll(&r->t, base, json, &sink, &eb_trig_fast);
}

static void rig_stop(struct rig *r)
{
        eb_trig_stop(&r->t, base);
        json_decref(r->sk.seen);
}

static int run_until_complete(struct rig *r, int secs)
{
        int i, miss = -1;

        for (i = 0; i < EB_T_TMOUT(secs) * 2; i++) {
                eb_trun_for(base, 500);
                miss = eb_tmissing(&r->t.sim, "", r->sk.seen, 0, NULL);
                if (miss == 0)
                        break;
        }
        return miss;
}

/* Requests the simulator answered for kommo-1 since the last reset. */
static long sim_requests(struct rig *r)
{
        json_t *st = eb_sim_get_json(&r->t.sim, "/_sim/stats?account=kommo-1");
        json_t *a = json_array_get(json_object_get(st, "accounts"), 0);
        long n = (long)eb_jfield_i64(a, "requests", -1);

        json_decref(st);
        return n;
}

static void sim_do(struct rig *r, const char *json)
{
        struct eb_sim_resp resp;

        EB_CHECK(eb_sim_control(&r->t.sim, json, &resp) == 200);
        eb_sim_resp_free(&resp);
}

/*
 * Five events in every second, pages of 10: almost every page boundary
 * splits a second, and the strict simulator orders each second anew on
 * every request. No overlap, so a walk's loss stays lost. Then two
 * seconds of 30 events each (more than a page). Every event must arrive.
 */
static void test_ties_at_page_boundaries(void)
{
        const char *args[] = {"--seed",
                              "5",
                              "--accounts",
                              "kommo=1",
                              "--backlog",
                              "450",
                              "--backlog-span",
                              "90s",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--late-visibility",
                              "0",
                              NULL};
        struct rig r;

        EB_REQUIRE(rig_start(&r, args,
                             "\"interval\":\"300ms\",\"start\":\"10m\","
                             "\"overlap\":\"0s\",\"lag\":\"0s\"",
                             10) == 0);
        EB_CHECK_INT(run_until_complete(&r, 60), 0);
        /* A second holding three pages, read alone. */
        sim_do(&r, "{\"generate\":30}");
        eb_trun_for(base, 1100);
        sim_do(&r, "{\"generate\":30}");
        EB_CHECK_INT(run_until_complete(&r, 30), 0);
        rig_stop(&r);
}

/*
 * Nothing new: one request per walk, whatever the overlap holds (here
 * the whole backlog, 1200 events: five pages of 250).
 */
static void test_idle_overlap_one_request(void)
{
        const char *args[] = {"--seed",
                              "6",
                              "--accounts",
                              "kommo=1",
                              "--backlog",
                              "1200",
                              "--backlog-span",
                              "6m",
                              "--rate",
                              "0",
                              NULL};
        struct rig r;
        const struct eb_source_stats *st;
        long req0, walks0, req, walks;

        EB_REQUIRE(rig_start(&r, args,
                             "\"interval\":\"500ms\",\"start\":\"10m\","
                             "\"overlap\":\"10m\"",
                             250) == 0);
        EB_CHECK_INT(run_until_complete(&r, 60), 0);
        eb_trun_for(base, 1500); /* the walks that follow the backlog */
        st = eb_poller_stats(r.t.p, "kommo-1");
        EB_REQUIRE(st != NULL);
        req0 = sim_requests(&r);
        walks0 = (long)st->walks;
        eb_trun_for(base, 6000);
        req = sim_requests(&r) - req0;
        walks = (long)st->walks - walks0;
        printf("# idle: %ld requests in %ld walks (poller: %llu requests)\n",
               req, walks, (unsigned long long)st->requests);
        EB_CHECK(walks >= 5);
        /* one walk may be under way at either end */
        EB_CHECK(req <= walks + 1);
        rig_stop(&r);
}

/*
 * Live traffic at 20 events a second with the strict simulator's late
 * visibility (up to 5 s): at most 1.2 times the pages the new events
 * need, and every event arrives.
 */
static void test_live_overlap_pages(void)
{
        const char *args[] = {"--seed",
                              "7",
                              "--accounts",
                              "kommo=1",
                              "--backlog",
                              "600",
                              "--backlog-span",
                              "3m",
                              "--rate",
                              "20",
                              NULL};
        struct rig r;
        long req0, need0, req, need;

        EB_REQUIRE(rig_start(&r, args, "\"interval\":\"2s\",\"start\":\"10m\"",
                             250) == 0);
        eb_trun_for(base, 6000); /* the backlog, and the walks after it */
        req0 = sim_requests(&r);
        need0 = r.sk.pages_needed;
        eb_trun_for(base, 12000);
        req = sim_requests(&r) - req0;
        need = r.sk.pages_needed - need0;
        printf("# live: %ld requests, new events needed %ld pages\n", req,
               need);
        EB_CHECK(need >= 4);
        /* one walk may be under way at either end */
        EB_CHECK(req * 10 <= (need + 1) * 12);
        sim_do(&r, "{\"set\":{\"rate\":0}}");
        EB_CHECK_INT(run_until_complete(&r, 30), 0);
        rig_stop(&r);
}

/*
 * No lag: events become visible up to 5 s after their time, after the
 * walk that read their second (two entities, one draw of lateness each:
 * with this seed, evbridge without the recheck seconds and the count
 * comparison misses 23 events). The next walk reads the recheck seconds
 * whole and goes on down where a second's count changed: every event
 * arrives.
 */
static void test_late_events_no_lag(void)
{
        const char *args[] = {"--seed",     "1",      "--accounts",
                              "kommo=1",    "--rate", "6",
                              "--entities", "2",      "--late-visibility",
                              "5s",         NULL};
        struct rig r;

        EB_REQUIRE(rig_start(&r, args,
                             "\"interval\":\"700ms\",\"start\":\"2m\","
                             "\"lag\":\"0s\"",
                             5) == 0);
        eb_trun_for(base, 10000);
        sim_do(&r, "{\"set\":{\"rate\":0}}");
        EB_CHECK_INT(run_until_complete(&r, 30), 0);
        rig_stop(&r);
}

int main(void)
{
        curl_global_init(CURL_GLOBAL_DEFAULT);
        eb_log_set_level(EB_LOG_ERROR);
        base = event_base_new();
        EB_RUN(test_ties_at_page_boundaries);
        EB_RUN(test_idle_overlap_one_request);
        EB_RUN(test_live_overlap_pages);
        EB_RUN(test_late_events_no_lag);
        event_base_free(base);
        curl_global_cleanup();
        return eb_test_summary();
}
