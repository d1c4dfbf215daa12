/*
 * Unit tests for the Close adapter (lib/providers/close.c): filter
 * combinations, URLs and auth, cursor walks, watermark rules, restart
 * from a checkpoint (stale cursor), rate-limit signals, status
 * classification and normalization.
 */
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"
#include "provider_test.h"

#include <errno.h>

#define CLOSE_BASE "https://api.close.com"
#define EV_URL     CLOSE_BASE "/api/v1/event/"
#define FX(name)   "providers/close/" name
#define JSON       "application/json"
/* base64("api_3x4mpl3K3y:"): the API key as user, empty password. */
#define AUTH "Authorization: Basic YXBpXzN4NG1wbDNLM3k6"

/* ---- options ---------------------------------------------------------- */

static void test_close_combinations(void)
{
        static const char *const allowed[] = {
                NULL,
                "{}",
                "{\"object_type\":\"opportunity\",\"object_id\":\"oppo_1\"}",
                "{\"object_type\":\"lead\",\"action\":\"deleted\"}",
                "{\"object_id\":\"lead_1\",\"action\":\"updated\"}",
                "{\"lead_id\":\"lead_1\",\"object_type\":\"activity.call\"}",
                "{\"lead_id\":\"lead_1\",\"object_type\":\"activity.call\","
                "\"action\":\"completed\"}",
                "{\"lead_id\":\"lead_1\",\"user_id\":\"user_1\","
                "\"object_type\":\"task.lead\"}",
                "{\"lead_id\":\"lead_1\",\"user_id\":\"user_1\","
                "\"object_type\":\"task.lead\",\"action\":\"completed\"}",
                "{\"lead_id\":\"lead_1\",\"user_id\":\"user_1\"}",
                "{\"user_id\":\"user_1\",\"object_id\":\"oppo_1\"}",
                "{\"user_id\":\"user_1\",\"object_id\":\"oppo_1\","
                "\"action\":\"updated\"}",
                "{\"user_id\":\"user_1\",\"object_type\":\"contact\"}",
                "{\"user_id\":\"user_1\",\"object_type\":\"contact\","
                "\"action\":\"created\"}",
                "{\"lead_id\":\"lead_1\"}",
                "{\"user_id\":\"user_1\"}",
                "{\"request_id\":\"req_1\"}",
        };
        static const struct t_opt_case rejected[] = {
                {"{\"action\":\"deleted\"}", "combination action;"},
                {"{\"object_type\":\"lead\"}", "combination object_type;"},
                {"{\"object_id\":\"lead_1\"}", "combination object_id;"},
                {"{\"lead_id\":\"lead_1\",\"action\":\"created\"}",
                 "combination action+lead_id;"},
                {"{\"user_id\":\"user_1\",\"action\":\"created\"}",
                 "combination action+user_id;"},
                {"{\"request_id\":\"req_1\",\"lead_id\":\"lead_1\"}",
                 "combination lead_id+request_id;"},
                {"{\"object_type\":\"lead\",\"object_id\":\"lead_1\","
                 "\"action\":\"updated\"}",
                 "combination object_type+object_id+action;"},
                {"{\"lead_id\":\"lead_1\",\"object_id\":\"oppo_1\"}",
                 "combination object_id+lead_id;"},
                {"{\"object_type\":\"lead\",\"date_updated__gte\":\"x\"}",
                 "sources[0].options.date_updated__gte: unknown option"},
                {"{\"object_type\":5,\"action\":\"updated\"}",
                 "sources[0].options.object_type: expected a non-empty "
                 "string"},
                {"{\"object_type\":\"\",\"action\":\"updated\"}",
                 "sources[0].options.object_type: expected a non-empty "
                 "string"},
                {"{\"object_type\":\"lead x\",\"action\":\"updated\"}",
                 "sources[0].options.object_type: expected a non-empty "
                 "string"},
                {"\"lead\"", "sources[0].options: expected an object"},
        };
        size_t i;

        for (i = 0; i < sizeof(allowed) / sizeof(allowed[0]); i++)
                t_check_option(&eb_provider_close, NULL, i, allowed[i], NULL,
                               1);
        /* Rejected: the message contains the expected text. */
        for (i = 0; i < sizeof(rejected) / sizeof(rejected[0]); i++)
                t_check_option(&eb_provider_close, NULL, i, rejected[i].opts,
                               rejected[i].err, 0);
        /* The whole message for one case. */
        {
                struct eb_source_cfg s;
                char err[512] = "";

                t_src_init(&s, "close", NULL, "{\"action\":\"deleted\"}");
                EB_CHECK_INT(eb_provider_close.check_config(&s, "sources[2]",
                                                            err, sizeof(err)),
                             -EINVAL);
                EB_CHECK_STR(err,
                             "sources[2].options: Close does not accept the "
                             "filter combination action; allowed: "
                             "object_type+object_id, object_type+action, "
                             "object_id+action, lead_id+object_type[+action], "
                             "lead_id+user_id[+object_type[+action]], "
                             "user_id+object_id[+action], "
                             "user_id+object_type[+action], lead_id, user_id, "
                             "request_id, or none");
                t_src_fini(&s);
        }
}

/* ---- URLs and the cursor walk ----------------------------------------- */

static void begin(struct eb_walk *w, struct eb_source_cfg *s, json_t *cp,
                  int64_t now)
{
        eb_walk_init(w, &eb_provider_close, s, cp, now);
}

static void test_close_first_url(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        char *auth = NULL, *url;

        t_src_init(&s, "close", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_CHECK_STR(w.base_url, CLOSE_BASE);
        EB_CHECK_INT(w.page_size, 50);
        EB_CHECK_INT(w.overlap_ms, 300000);
        EB_CHECK_INT(w.lag_ms, 300000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        url = t_url(&w, &auth);
        EB_CHECK_STR(url, EV_URL "?date_updated__gte=2023-11-13T22%3A13%3A20."
                                 "000Z&_limit=50");
        EB_CHECK_STR(auth, AUTH);
        free(url);
        free(auth);
        eb_walk_fini(&w);
        t_src_fini(&s);

        /* Filters after _limit, in a fixed order; a base_url override. */
        t_src_init(&s, "close", "http://127.0.0.1:8081/close/",
                   "{\"action\":\"updated\",\"object_type\":\"opportunity\"}");
        s.page_size = 20;
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, "http://127.0.0.1:8081/close/api/v1/event/"
                        "?date_updated__gte=2023-11-13T22%3A13%3A20.000Z"
                        "&_limit=20&object_type=opportunity&action=updated");
        eb_walk_fini(&w);
        t_src_fini(&s);
}

static void test_close_walk(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("page1.json"));
        char *p2 = t_fixture(FX("page2_last.json"));
        json_t *cp;

        t_src_init(&s, "close", NULL,
                   "{\"object_type\":\"opportunity\",\"action\":\"updated\"}");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-13T22%3A13%3A20."
                               "000Z&_limit=50&object_type=opportunity"
                               "&action=updated");
        eb_page_init(&page);
        t_feed(&w, 200, p1, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 3);
        EB_CHECK_INT(page.more, 1);
        EB_CHECK(w.cp == NULL);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_CP(&w, "{\"cursor\":\"cursor2\",\"gte\":\"2023-11-13T22:13:"
                       "20.000Z\",\"low\":\"2023-11-14T22:01:00.500Z\","
                       "\"max\":\"2023-11-14T22:10:00.123Z\","
                       "\"started\":\"2023-11-14T22:13:20.000Z\",\"wm\":"
                       "\"2023-11-13T22:13:20.000Z\"}");
        /* Cursor pages re-send the filters but never date_updated. */
        T_CHECK_URL(&w, EV_URL "?_cursor=cursor2&_limit=50"
                               "&object_type=opportunity&action=updated");
        t_feed(&w, 200, p2, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 2);
        EB_CHECK_INT(page.more, 0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* wm = min(max seen 22:10:00.123, started - 5m = 22:08:20). */
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-14T22:08:20.000Z\"}");
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-14T22:08:20.000Z\"}");

        /* Next walk: date_updated__gte = wm - 5m. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 60000);
        json_decref(cp);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-14T22%3A03%3A20."
                               "000Z&_limit=50&object_type=opportunity"
                               "&action=updated");
        /* An empty page ends the walk; with nothing seen, wm stays. */
        t_feed(&w, 200, "{\"data\":[],\"cursor_next\":null}", JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.more, 0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        /* A walk from a checkpoint leaves its overlap's counts: none. */
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_at\":1700000060000,"
                       "\"seen_span\":299,"
                       "\"wm\":\"2023-11-14T22:08:20.000Z\"}");
        eb_walk_fini(&w);
        t_src_fini(&s);

        /* Old events only: wm = the newest date_updated seen. */
        t_src_init(&s, "close", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, p2, JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-14T21:59:59.999Z\"}");
        eb_walk_fini(&w);

        /* Never backwards: an older max keeps a newer wm. */
        cp = json_pack("{ss}", "wm", "2023-11-14T22:05:00.000Z");
        begin(&w, &s, cp, T_NOW_MS);
        json_decref(cp);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, p2, JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_at\":1700000000000,"
                       "\"seen_span\":299,"
                       "\"wm\":\"2023-11-14T22:05:00.000Z\"}");
        eb_walk_fini(&w);
        t_src_fini(&s);

        free(p1);
        free(p2);
}

/* The last walk (watermark 22:08:20, begun at 22:13:20) counted one event
 * at 22:06:00 and one at 22:07:00. Seconds before 22:08:15 (its start
 * minus Close's five minutes and 5 s of skew) cannot have changed since. */
#define OV_CP                                                                  \
        "{\"wm\":\"2023-11-14T22:08:20.000Z\",\"seen\":[[80,1],[140,1]],"      \
        "\"seen_span\":300,\"seen_at\":1700000000000}"
#define OV_EV(id, t)                                                           \
        "{\"id\":\"" id "\",\"object_type\":\"lead\",\"action\":"              \
        "\"updated\",\"date_updated\":\"2023-11-14T" t "\"}"

/*
 * The overlap is not downloaded again: the walk reads down through what is
 * new and the last five minutes, and stops at the first page whose whole
 * seconds below 22:08:15 hold the last walk's counts, although Close has
 * more pages. A second whose count changed sends it on down.
 */
static void test_close_overlap(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        json_t *cp = json_loads(OV_CP, 0, NULL);
        const char *pa = "{\"data\":[" OV_EV("e1", "22:14:00") "," OV_EV(
                "e2",
                "22:09:00") "," OV_EV("e3",
                                      "22:07:00") "],"
                                                  "\"cursor_next\":\"c2\"}";

        EB_REQUIRE(cp != NULL);
        t_src_init(&s, "close", NULL, NULL);
        begin(&w, &s, cp, T_NOW_MS + 60000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, pa, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 3);
        EB_CHECK_INT(page.more, 0);
        EB_CHECK(strstr(page.detail, "overlap below is unchanged") != NULL);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* wm = started - lag = 22:09:20; the counts: 22:09:00 from this
         * walk, 22:07:00 and 22:06:00 from the last one. */
        T_CHECK_CP(&w, "{\"seen\":[[20,1],[140,1],[200,1]],"
                       "\"seen_at\":1700000060000,\"seen_span\":300,"
                       "\"wm\":\"2023-11-14T22:09:20.000Z\"}");
        eb_walk_fini(&w);
        json_decref(cp);

        /* The last walk also counted an event at 22:08:00, now gone
         * (consolidated into a newer one): read on. */
        cp = json_loads("{\"wm\":\"2023-11-14T22:08:20.000Z\",\"seen\":"
                        "[[20,1],[80,1],[140,1]],\"seen_span\":300,"
                        "\"seen_at\":1700000000000}",
                        0, NULL);
        EB_REQUIRE(cp != NULL);
        begin(&w, &s, cp, T_NOW_MS + 60000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, pa, JSON, &page);
        EB_CHECK_INT(page.more, 1);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_URL(&w, EV_URL "?_cursor=c2&_limit=50");
        eb_walk_fini(&w);
        json_decref(cp);
        t_src_fini(&s);
}

static void test_close_walk_guards(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *old = t_fixture(FX("below_gte.json"));
        char *p1 = t_fixture(FX("page1.json"));
        char *p1_self = NULL;

        t_src_init(&s, "close", NULL, NULL);

        /* A page below date_updated__gte ends the walk even with a cursor:
         * its events still count (duplicates are fine). */
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        eb_page_init(&page);
        t_feed(&w, 200, old, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 1);
        EB_CHECK_INT(page.more, 0);
        EB_CHECK(strstr(page.detail, "reached date_updated__gte") != NULL);
        eb_page_fini(&page);
        eb_walk_fini(&w);

        /* A cursor_next equal to the cursor just used is a loop. */
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, p1, JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        t_feed(&w, 200, p1, JSON, &page); /* cursor_next "cursor2" again */
        EB_CHECK_INT(page.kind, EB_RESP_BAD_BODY);
        EB_CHECK_STR(page.detail, "cursor_next repeats the cursor just used");
        EB_CHECK_INT(page.events_cnt, 0);
        eb_page_fini(&page);
        eb_walk_fini(&w);

        /* An opaque cursor is percent-encoded. */
        p1_self = t_strdup("{\"data\":[{\"id\":\"ev_1\",\"object_type\":"
                           "\"lead\",\"action\":\"created\",\"date_updated\":"
                           "\"2023-11-14T22:00:00\"}],\"cursor_next\":"
                           "\"a+b/c=d&e\"}");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, p1_self, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_URL(&w, EV_URL "?_cursor=a%2Bb%2Fc%3Dd%26e&_limit=50");
        eb_walk_fini(&w);

        t_src_fini(&s);
        free(old);
        free(p1);
        free(p1_self);
}

static void test_close_restart(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("page1.json"));
        char *p2 = t_fixture(FX("page2_last.json"));
        char *e400 = t_fixture(FX("error_400.json"));
        json_t *cp = json_pack(
                "{ssssssssss}", "wm", "2023-11-14T21:00:00.000Z", "gte",
                "2023-11-14T20:55:00.000Z", "cursor", "cur_stale", "started",
                "2023-11-14T21:10:00.000Z", "max", "2023-11-14T21:05:00.000Z");

        t_src_init(&s, "close", NULL, NULL);

        /* Resume the cursor walk where it stopped. */
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, EV_URL "?_cursor=cur_stale&_limit=50");
        /* A 400 on a cursor: tried once more, then (refused twice) the
         * walk goes on with a date filter; nothing acknowledged yet in
         * this walk, so from date_updated__gte alone. */
        eb_page_init(&page);
        t_feed(&w, 400, e400, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        EB_CHECK_STR(page.detail, "HTTP 400: Invalid cursor (cursor refused: "
                                  "trying it once more)");
        eb_page_fini(&page);
        w.prov->page_done(&w); /* no-op: not an OK page */
        EB_CHECK(json_equal(w.cp, cp));
        T_CHECK_URL(&w, EV_URL "?_cursor=cur_stale&_limit=50");
        t_feed(&w, 400, e400, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        EB_CHECK_STR(page.detail,
                     "HTTP 400: Invalid cursor (cursor refused twice: going "
                     "on from the checkpoint with date_updated__lte)");
        eb_page_fini(&page);
        EB_CHECK(json_equal(w.cp, cp));
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-14T20%3A55%3A00."
                               "000Z&_limit=50");
        t_feed(&w, 200, p1, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_URL(&w, EV_URL "?_cursor=cursor2&_limit=50");
        /* Every walk, every cursor: expired cursors never stop a walk,
         * and it goes on below the pages already taken. */
        t_feed(&w, 400, e400, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        eb_page_fini(&page);
        T_CHECK_URL(&w, EV_URL "?_cursor=cursor2&_limit=50");
        t_feed(&w, 400, e400, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        eb_page_fini(&page);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-14T20%3A55%3A00."
                               "000Z&date_updated__lte=2023-11-14T22%3A01%3A00."
                               "500Z&_limit=50");
        t_feed(&w, 200, p2, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        /* max 22:10:00.123 (page 1) capped by the original start - 5m. */
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-14T21:05:00.000Z\"}");
        eb_walk_fini(&w);

        /* A resumed cursor that works finishes with the saved max. */
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, "{\"data\":[],\"cursor_next\":null}", JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-14T21:05:00.000Z\"}");
        eb_walk_fini(&w);

        /* Abandoned before the end: the mid-walk checkpoint stays. */
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        w.prov->walk_end(&w);
        EB_CHECK(json_equal(w.cp, cp));
        eb_walk_fini(&w);

        json_decref(cp);
        t_src_fini(&s);
        free(p1);
        free(p2);
        free(e400);
}

/* A null cursor is a finished walk: start from wm. (Checkpoints that
 * are refused are in test_provider_contract.c.) */
static void test_close_null_cursor(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;

        t_src_init(&s, "close", NULL, NULL);
        {
                json_t *cp =
                        json_pack("{ssso}", "wm", "2023-11-14T21:00:00.000Z",
                                  "cursor", json_null());

                begin(&w, &s, cp, T_NOW_MS);
                EB_CHECK_INT(w.prov->walk_begin(&w), 0);
                T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-14T20%3A55%"
                                       "3A00.000Z&_limit=50");
                eb_walk_fini(&w);
                json_decref(cp);
        }
        t_src_fini(&s);
}

/* ---- statuses and rate limits ----------------------------------------- */

static void test_close_statuses(void)
{
        static const struct {
                long status;
                const char *fixture, *body, *ct, *retry_after, *ratelimit;
                eb_resp_kind_t kind;
                int64_t retry_ms;
                double rl_limit, rl_remaining;
                int64_t rl_reset_ms;
                size_t events;
                const char *detail;
        } cases[] = {
                {200, FX("page1.json"), NULL, JSON, NULL,
                 "limit=100, remaining=50, reset=5", EB_RESP_OK, 0, 100, 50,
                 5000, 3, "3 events, more"},
                {200, FX("page1.json"), NULL, JSON, NULL, NULL, EB_RESP_OK, 0,
                 -1, -1, -1, 3, "3 events"},
                /* Budget spent on an OK page: hold the next request. */
                {200, FX("page1.json"), NULL, JSON, NULL,
                 "limit=100, remaining=0, reset=0.734", EB_RESP_OK, 734, 100, 0,
                 734, 3, "3 events"},
                {200, FX("page1.json"), NULL, JSON, NULL, "garbage", EB_RESP_OK,
                 0, -1, -1, -1, 3, "3 events"},
                {401, NULL, "{\"error\":\"Unauthorized\"}", JSON, NULL, NULL,
                 EB_RESP_AUTH, 0, -1, -1, -1, 0, "HTTP 401: Unauthorized"},
                {402, NULL, "", NULL, NULL, NULL, EB_RESP_AUTH, 0, -1, -1, -1,
                 0, "HTTP 402"},
                {403, NULL, "", NULL, NULL, NULL, EB_RESP_AUTH, 0, -1, -1, -1,
                 0, "HTTP 403"},
                {429, NULL, "", NULL, "1",
                 "limit=100, remaining=0, reset=0.734", EB_RESP_RATE_LIMITED,
                 734, 100, 0, 734, 0, "HTTP 429"},
                {429, NULL, "", NULL, "3", NULL, EB_RESP_RATE_LIMITED, 3000, -1,
                 -1, -1, 0, "HTTP 429"},
                {429, NULL, "", NULL, NULL, "reset=2.5", EB_RESP_RATE_LIMITED,
                 2500, -1, -1, 2500, 0, "HTTP 429"},
                {429, NULL, "", NULL, "2", "limit=100, remaining=0, reset=0",
                 EB_RESP_RATE_LIMITED, 2000, 100, 0, 0, 0, "HTTP 429"},
                {429, NULL, "", NULL, NULL, NULL, EB_RESP_RATE_LIMITED, 0, -1,
                 -1, -1, 0, "HTTP 429"},
                {500, NULL, "", NULL, NULL, NULL, EB_RESP_RETRY, 0, -1, -1, -1,
                 0, "HTTP 500"},
                {503, NULL, "", NULL, NULL, NULL, EB_RESP_RETRY, 0, -1, -1, -1,
                 0, "HTTP 503"},
                {408, NULL, "", NULL, NULL, NULL, EB_RESP_RETRY, 0, -1, -1, -1,
                 0, "HTTP 408"},
                {400, FX("error_400.json"), NULL, JSON, NULL, NULL,
                 EB_RESP_CLIENT_ERROR, 0, -1, -1, -1, 0,
                 "HTTP 400: Invalid cursor"},
                {404, NULL, "", NULL, NULL, NULL, EB_RESP_CLIENT_ERROR, 0, -1,
                 -1, -1, 0, "HTTP 404"},
                {200, NULL, "not json", JSON, NULL, NULL, EB_RESP_BAD_BODY, 0,
                 -1, -1, -1, 0, "invalid JSON"},
                {200, NULL, "{\"data\":[]}", "text/plain", NULL, NULL,
                 EB_RESP_BAD_BODY, 0, -1, -1, -1, 0,
                 "HTTP 200 with content-type \"text/plain\""},
                {200, NULL, "{\"cursor_next\":null}", JSON, NULL, NULL,
                 EB_RESP_BAD_BODY, 0, -1, -1, -1, 0, "no \"data\" array"},
                {200, NULL, "{\"data\":{}}", JSON, NULL, NULL, EB_RESP_BAD_BODY,
                 0, -1, -1, -1, 0, "no \"data\" array"},
                {200, NULL, "{\"data\":[],\"cursor_next\":5}", JSON, NULL, NULL,
                 EB_RESP_BAD_BODY, 0, -1, -1, -1, 0, "invalid \"cursor_next\""},
                {200, NULL, "{\"data\":[],\"cursor_next\":\"\"}", JSON, NULL,
                 NULL, EB_RESP_BAD_BODY, 0, -1, -1, -1, 0,
                 "invalid \"cursor_next\""},
                {200, NULL,
                 "{\"data\":[{\"id\":\"ev_1\",\"object_type\":\"lead\","
                 "\"action\":\"created\"}],\"cursor_next\":null}",
                 JSON, NULL, NULL, EB_RESP_OK, 0, -1, -1, -1, 1,
                 "1 events; 1 poison event for the dead-letter topic (page "
                 "1, data[0]: event ev_1: missing or invalid "
                 "\"date_updated\")"},
                {200, NULL,
                 "{\"data\":[{\"id\":\"ev_1\",\"object_type\":\"lead\","
                 "\"action\":\"created\",\"date_updated\":\"2023-13-01\"}]}",
                 JSON, NULL, NULL, EB_RESP_OK, 0, -1, -1, -1, 1,
                 "1 events; 1 poison event for the dead-letter topic (page "
                 "1, data[0]: event ev_1: missing or invalid "
                 "\"date_updated\")"},
                {200, NULL, "{\"data\":[null]}", JSON, NULL, NULL, EB_RESP_OK,
                 0, -1, -1, -1, 1,
                 "1 events; 1 poison event for the dead-letter topic (page "
                 "1, data[0]: event is not a JSON object)"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "close", NULL, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                const struct t_status c = {
                        cases[i].status,      cases[i].fixture,
                        cases[i].body,        cases[i].ct,
                        cases[i].retry_after, cases[i].kind,
                        cases[i].retry_ms,    cases[i].events,
                        cases[i].detail};
                struct eb_page page;

                t_check_status(&eb_provider_close, &s, i, &c,
                               cases[i].ratelimit, &page);
                EB_CHECK(page.ratelimit_limit == cases[i].rl_limit);
                EB_CHECK(page.ratelimit_remaining == cases[i].rl_remaining);
                EB_CHECK_INT(page.ratelimit_reset_ms, cases[i].rl_reset_ms);
                eb_page_fini(&page);
        }
        t_src_fini(&s);
}

/* ---- normalization ---------------------------------------------------- */

static void test_close_normalize_webhook(void)
{
        struct eb_source_cfg s;
        char *body = t_fixture(FX("webhook_example4.json"));
        json_t *root = json_loads(body, 0, NULL), *inner;
        struct eb_event *evt;
        char err[256] = "";
        int64_t t = 0;
        int pass;

        EB_REQUIRE(root);
        inner = json_object_get(root, "event");
        t_src_init(&s, "close", NULL, NULL);
        /* Both the whole delivery and the bare event normalize alike. */
        for (pass = 0; pass < 2; pass++) {
                evt = eb_provider_close.normalize(&s, pass ? inner : root, err,
                                                  sizeof(err));
                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->id, "ev_2sYKRjcrA79yKxi3S4Crd7");
                EB_CHECK_STR(evt->source_name, "acme");
                EB_CHECK_STR(evt->provider, "close");
                EB_CHECK_STR(
                        evt->account,
                        "orga_XbVPx5fFbKlYTz9PW5Ih1XDhViV10YihIaEgMEb6fVW");
                EB_CHECK_STR(evt->entity_type, "opportunity");
                EB_CHECK_STR(
                        evt->entity_id,
                        "oppo_7H4sjNso7FyBFaeR3RXi5PMJbilfo0c6UPCxsJtEhCO");
                EB_CHECK_STR(evt->action, "updated");
                EB_CHECK_STR(
                        evt->actor,
                        "user_N6KhMpzHRCYQHdn4gRNIFNN5JExnsrprKA6ekxM63XA");
                EB_CHECK_STR(evt->version, "2019-01-15T12:48:23.395000");
                EB_CHECK(eb_rfc3339_parse("2019-01-15T12:48:23.395Z", &t) == 0);
                EB_CHECK_INT(evt->time_ms, t);
                EB_CHECK_INT(json_object_size(evt->fields), 11);
                EB_CHECK_STR(
                        json_string_value(
                                json_object_get(evt->fields, "lead_id")),
                        "lead_zwqYhEFwzPyfCErS8uQ77is2wFLvr9BgVi6cTfbFM68");
                EB_CHECK_STR(json_string_value(json_object_get(evt->fields,
                                                               "request_id")),
                             "req_4S2L8JTBAA1OUS74SVmfbN");
                EB_CHECK_STR(json_string_value(json_object_get(evt->fields,
                                                               "date_created")),
                             "2019-01-15T12:48:23.395000");
                EB_CHECK_INT(json_array_size(json_object_get(evt->fields,
                                                             "changed_fields")),
                             5);
                EB_CHECK(json_equal(json_object_get(evt->fields, "data"),
                                    json_object_get(inner, "data")));
                EB_CHECK(json_equal(
                        json_object_get(evt->fields, "previous_data"),
                        json_object_get(inner, "previous_data")));
                EB_CHECK(json_equal(json_object_get(evt->fields, "meta"),
                                    json_object_get(inner, "meta")));
                EB_CHECK(evt->native == inner);
                {
                        char *type = eb_event_type(evt);

                        EB_CHECK_STR(type, "close.opportunity.updated");
                        free(type);
                }
                eb_event_free(evt);
        }
        json_decref(root);
        free(body);
        t_src_fini(&s);
}

static void test_close_consolidated(void)
{
        struct eb_source_cfg s;
        char *p1 = t_fixture(FX("page1.json"));
        char *pc = t_fixture(FX("consolidated.json"));
        json_t *r1 = json_loads(p1, 0, NULL), *rc = json_loads(pc, 0, NULL);
        struct eb_event *a, *b;
        char err[256];
        char *ka, *kb;
        size_t la = 0, lb = 0;

        EB_REQUIRE(r1 && rc);
        t_src_init(&s, "close", NULL, NULL);
        a = eb_provider_close.normalize(
                &s, json_array_get(json_object_get(r1, "data"), 0), err,
                sizeof(err));
        b = eb_provider_close.normalize(
                &s, json_array_get(json_object_get(rc, "data"), 0), err,
                sizeof(err));
        EB_REQUIRE(a && b);
        /* Same event id, rewritten in place: a new version to publish. */
        EB_CHECK_STR(a->id, b->id);
        EB_CHECK_STR(a->version, "2023-11-14T22:10:00.123456");
        EB_CHECK_STR(b->version, "2023-11-14T22:12:30.000000");
        EB_CHECK(b->time_ms > a->time_ms);
        ka = eb_event_dedupe_key(a, &la);
        kb = eb_event_dedupe_key(b, &lb);
        EB_CHECK(la != lb || memcmp(ka, kb, la) != 0);
        free(ka);
        free(kb);
        eb_event_free(a);
        eb_event_free(b);
        json_decref(r1);
        json_decref(rc);
        free(p1);
        free(pc);
        t_src_fini(&s);
}

static void test_close_type_table(void)
{
        static const struct {
                const char *object_type, *action, *ce_type;
        } cases[] = {
                {"lead", "created", "close.lead.created"},
                {"lead", "merged", "close.lead.merged"},
                {"contact", "deleted", "close.contact.deleted"},
                {"opportunity", "updated", "close.opportunity.updated"},
                {"task.lead", "completed", "close.task.lead.completed"},
                {"activity.email", "sent", "close.activity.email.sent"},
                {"activity.call", "answered", "close.activity.call.answered"},
                {"activity.meeting", "canceled",
                 "close.activity.meeting.canceled"},
                {"activity.sms", "sent", "close.activity.sms.sent"},
                {"activity.opportunity_status_change", "updated",
                 "close.activity.opportunity_status_change.updated"},
                {"status_change.opportunity", "created",
                 "close.status_change.opportunity.created"},
                {"import", "reverted", "close.import.reverted"},
                {"bulk_action.email", "paused",
                 "close.bulk_action.email.paused"},
                {"custom_fields.lead", "updated",
                 "close.custom_fields.lead.updated"},
                {"membership", "deactivated", "close.membership.deactivated"},
                {"unsubscribed_email", "created",
                 "close.unsubscribed_email.created"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "close", NULL, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                json_t *ev = json_pack(
                        "{sssssssssssossso}", "id", "ev_x", "object_type",
                        cases[i].object_type, "action", cases[i].action,
                        "date_updated", "2023-11-14T22:00:00.000000",
                        "object_id", "obj_1", "user_id", json_null(),
                        "organization_id", "orga_1", "lead_id", json_null());
                struct eb_event *evt =
                        eb_provider_close.normalize(&s, ev, err, sizeof(err));
                char *type;

                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->entity_type, cases[i].object_type);
                EB_CHECK_STR(evt->action, cases[i].action);
                EB_CHECK_STR(evt->entity_id, "obj_1");
                EB_CHECK(evt->actor == NULL); /* user_id null */
                /* Absent members become null fields. */
                EB_CHECK(json_is_null(json_object_get(evt->fields, "meta")));
                type = eb_event_type(evt);
                EB_CHECK_STR(type, cases[i].ce_type);
                free(type);
                eb_event_free(evt);
                json_decref(ev);
        }
        t_src_fini(&s);
}

/* Slices (w->slice_ms): a window [wm - overlap, wm + slice) with
 * date_updated__lt while that ends before now - lag; the walk ends at its
 * lt with "cut", and the next one starts at wm without the overlap. */
static void test_close_slices(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("page1.json"));
        json_t *cp;

        t_src_init(&s, "close", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        w.slice_ms = 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        EB_CHECK_INT(w.resumed, 0);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-13T22%3A13%3A20."
                               "000Z&date_updated__lt=2023-11-13T23%3A13%3A"
                               "20.000Z&_limit=50");
        /* Mid-walk checkpoints keep the slice's end. */
        t_feed(&w, 200, p1, JSON, &page);
        EB_CHECK_INT(page.more, 1);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_CP(&w, "{\"cursor\":\"cursor2\",\"gte\":\"2023-11-13T22:13:"
                       "20.000Z\",\"low\":\"2023-11-14T22:01:00.500Z\","
                       "\"lt\":\"2023-11-13T23:13:20.000Z\","
                       "\"max\":\"2023-11-14T22:10:00.123Z\","
                       "\"started\":\"2023-11-14T22:13:20.000Z\",\"wm\":"
                       "\"2023-11-13T22:13:20.000Z\"}");
        /* A restart resumes it; a cursor refused twice goes on with
         * the slice's dates, below the pages already taken. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 1000);
        json_decref(cp);
        w.slice_ms = 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        EB_CHECK_INT(w.resumed, 1);
        T_CHECK_URL(&w, EV_URL "?_cursor=cursor2&_limit=50");
        t_feed(&w, 400, "{\"error\":\"bad cursor\"}", JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        eb_page_fini(&page);
        T_CHECK_URL(&w, EV_URL "?_cursor=cursor2&_limit=50");
        t_feed(&w, 400, "{\"error\":\"bad cursor\"}", JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        eb_page_fini(&page);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-13T22%3A13%3A20."
                               "000Z&date_updated__lt=2023-11-13T23%3A13%3A"
                               "20.000Z&date_updated__lte=2023-11-14T22%3A01%"
                               "3A00.500Z&_limit=50");
        t_feed(&w, 200, "{\"data\":[],\"cursor_next\":null}", JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"cut\":true,\"wm\":\"2023-11-13T23:13:20.000Z\"}");

        /* The next slice starts at wm, no overlap. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 2000);
        w.slice_ms = 2 * 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-13T23%3A13%3A20."
                               "000Z&date_updated__lt=2023-11-14T01%3A13%3A"
                               "20.000Z&_limit=50");
        eb_walk_fini(&w);

        /* A slice reaching now - lag is no slice: the usual walk, from
         * wm (still no overlap after a slice) up to now. */
        begin(&w, &s, cp, T_NOW_MS + 2000);
        json_decref(cp);
        w.slice_ms = 23LL * 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 0);
        T_CHECK_URL(&w, EV_URL "?date_updated__gte=2023-11-13T23%3A13%3A20."
                               "000Z&_limit=50");
        t_feed(&w, 200, "{\"data\":[],\"cursor_next\":null}", JSON, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"wm\":\"2023-11-13T23:13:20.000Z\"}");
        eb_walk_fini(&w);

        /* A mid-walk checkpoint whose lt is not after gte is corrupt. */
        cp = json_pack("{ssssssssss}", "wm", "2023-11-13T22:13:20.000Z", "gte",
                       "2023-11-13T22:13:20.000Z", "cursor", "c", "started",
                       "2023-11-14T22:13:20.000Z", "lt",
                       "2023-11-13T22:13:20.000Z");
        begin(&w, &s, cp, T_NOW_MS);
        json_decref(cp);
        EB_CHECK_INT(w.prov->walk_begin(&w), -EINVAL);
        eb_walk_fini(&w);
        t_src_fini(&s);
        free(p1);
}

int main(void)
{
        EB_RUN(test_close_combinations);
        EB_RUN(test_close_first_url);
        EB_RUN(test_close_walk);
        EB_RUN(test_close_overlap);
        EB_RUN(test_close_walk_guards);
        EB_RUN(test_close_slices);
        EB_RUN(test_close_restart);
        EB_RUN(test_close_null_cursor);
        EB_RUN(test_close_statuses);
        EB_RUN(test_close_normalize_webhook);
        EB_RUN(test_close_consolidated);
        EB_RUN(test_close_type_table);
        eb_log_shutdown();
        return eb_test_summary();
}
