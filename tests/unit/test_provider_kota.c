/*
 * Unit tests for the Kota adapter (lib/providers/kota.c): options, URLs and
 * auth, the 30-day floor, per-page watermark progression, restart from a
 * checkpoint, the types allow-list, status classification and
 * normalization (list items and v1/v2 webhooks, multi-dot types).
 */
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"
#include "provider_test.h"

#include <errno.h>

#define KOTA_BASE "https://api.kota.io"
#define FX(name)  "providers/kota/" name
#define JSON      "application/json"
#define PROBLEM   "application/problem+json"
#define CA0       "2023-11-13T22%3A13%3A20.000Z" /* now - 24h */
#define CA1       "2023-11-14T10%3A59%3A59.999Z" /* 11:00:00 - 1 ms */

/* ---- options ---------------------------------------------------------- */

static void test_kota_options(void)
{
        static const struct t_opt_case cases[] = {
                {NULL, NULL},
                {"{}", NULL},
                {"{\"version\":\"v1\"}", NULL},
                {"{\"version\":\"v2\",\"types\":[\"employee.created\","
                 "\"employer.health_insurance.quote.action_required\"]}",
                 NULL},
                {"{\"version\":\"v3\"}",
                 "sources[0].options.version: unknown value \"v3\" (allowed: "
                 "v1, v2)"},
                {"{\"version\":2}",
                 "sources[0].options.version: unknown value \"(not a "
                 "string)\" (allowed: v1, v2)"},
                {"{\"types\":[]}",
                 "sources[0].options.types: expected an array of 1..500 "
                 "event types"},
                {"{\"types\":\"employee.created\"}",
                 "sources[0].options.types: expected an array of 1..500 "
                 "event types"},
                {"{\"types\":[\"employee.created\",\"Employee Created\"]}",
                 "sources[0].options.types[1]: expected an event type such "
                 "as \"employee.created\" (lowercase letters, digits, '_' "
                 "and '.')"},
                {"{\"types\":[\".created\"]}",
                 "sources[0].options.types[0]: expected an event type such "
                 "as \"employee.created\" (lowercase letters, digits, '_' "
                 "and '.')"},
                {"{\"order_direction\":\"desc\"}",
                 "sources[0].options.order_direction: unknown option "
                 "(allowed: version, types)"},
                {"17", "sources[0].options: expected an object"},
        };

        t_check_options(&eb_provider_kota, NULL, cases,
                        sizeof(cases) / sizeof(cases[0]));
}

/* ---- URLs -------------------------------------------------------------- */

static void begin(struct eb_walk *w, struct eb_source_cfg *s, json_t *cp,
                  int64_t now)
{
        eb_walk_init(w, &eb_provider_kota, s, cp, now);
}

static void test_kota_urls(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        char *auth = NULL, *url;
        json_t *cp;

        t_src_init(&s, "kota", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_CHECK_INT(w.page_size, 100);
        EB_CHECK_INT(w.overlap_ms, 120000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        url = t_url(&w, &auth);
        EB_CHECK_STR(url,
                     KOTA_BASE "/events?order_direction=asc&created_after=" CA0
                               "&page=1&page_size=100");
        EB_CHECK_STR(auth, "Authorization: Bearer api_3x4mpl3K3y");
        free(url);
        free(auth);
        eb_walk_fini(&w);

        /* poll.start beyond 30 days: clamped to now - 30d + 1 minute. */
        free(s.poll_start);
        s.poll_start = t_strdup("60d");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-10-15T22%3A14%3A20.000Z&page=1"
                                  "&page_size=100");
        eb_walk_fini(&w);
        t_src_fini(&s);

        /* From a checkpoint: wm - overlap, from its whole second; pinned
         * v1; smaller pages. */
        t_src_init(&s, "kota", "https://test.api.kota.io",
                   "{\"version\":\"v1\"}");
        s.page_size = 25;
        cp = json_pack("{ss}", "wm", "2023-11-14T10:00:00.000Z");
        begin(&w, &s, cp, T_NOW_MS);
        json_decref(cp);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, "https://test.api.kota.io/events?order_direction=asc"
                        "&created_after=2023-11-14T09%3A57%3A59.999Z"
                        "&version=v1&page=1&page_size=25");
        eb_walk_fini(&w);
        t_src_fini(&s);
}

/* A first walk from poll.start "30d" whose first publish kept failing
 * was held past its minute of margin: its created_after is then older
 * than Kota's 30 days, and Kota answers 400. That stopped the source (and
 * before Kota refusals stopped it, was retried with the same stale
 * created_after for ever). The walk starts again from the new floor. */
static void test_kota_stale_floor(void)
{
        static const char body400[] =
                "{\"title\":\"One or more validation errors occurred.\","
                "\"status\":400,\"errors\":{\"created_after\":"
                "[\"created_after is limited to the last 30 days\"]}}";
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        struct eb_response r;

        t_src_init(&s, "kota", NULL, NULL);
        free(s.poll_start);
        s.poll_start = t_strdup("30d");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-10-15T22%3A14%3A20.000Z&page=1"
                                  "&page_size=100");
        /* Two minutes later the same request is refused. */
        r = t_resp(400, body400, PROBLEM);
        r.now_ms = T_NOW_MS + 120000;
        eb_page_init(&page);
        w.prov->handle_response(&w, &r, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        EB_CHECK(strstr(page.detail, "30 days") != NULL);
        eb_page_fini(&page);
        w.prov->page_done(&w); /* not a page: nothing moves */
        EB_CHECK(w.cp == NULL);
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-10-15T22%3A16%3A20.000Z&page=1"
                                  "&page_size=100");
        /* A 400 on a created_after inside the window is Kota refusing
         * the request itself: the source stops, as before. */
        r.now_ms = T_NOW_MS + 130000;
        w.prov->handle_response(&w, &r, &page);
        EB_CHECK_INT(page.kind, EB_RESP_REFUSED);
        eb_page_fini(&page);
        eb_walk_fini(&w);
        t_src_fini(&s);
}

/* ---- walk progression ----------------------------------------------- */

static void test_kota_walk(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("v1_page1.json"));
        char *p2 = t_fixture(FX("v2_last_page1.json"));
        const char *e500 = "{\"title\":\"Internal\",\"status\":500}";
        json_t *cp;

        t_src_init(&s, "kota", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        eb_page_init(&page);
        t_feed(&w, 200, p1, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 2);
        EB_CHECK_INT(page.skipped_cnt, 0);
        EB_CHECK_INT(page.more, 1);
        EB_CHECK(w.cp == NULL);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* Ascending order: the watermark moves with each page. The next
         * request reads the page's newest second again whole. */
        T_CHECK_CP(&w, "{\"created_after\":\"2023-11-14T10:59:59.999Z\","
                       "\"page\":1,\"wm\":\"2023-11-14T11:00:00.500Z\"}");
        T_CHECK_URL(&w,
                    KOTA_BASE "/events?order_direction=asc&created_after=" CA1
                              "&page=1&page_size=100");
        t_feed(&w, 500, e500, PROBLEM, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_URL(&w,
                    KOTA_BASE "/events?order_direction=asc&created_after=" CA1
                              "&page=1&page_size=100");
        t_feed(&w, 200, p2, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 1);
        EB_CHECK_INT(page.more, 0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* The walk is over: with the count of each second of its overlap
         * (one event in 12:30:00) and when it began. */
        T_CHECK_CP(&w, "{\"seen\":[[0,1]],\"seen_at\":1700000000000,"
                       "\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T12:30:00.250Z\"}");
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[[0,1]],\"seen_at\":1700000000000,"
                       "\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T12:30:00.250Z\"}");

        /* The next walk starts at wm - 2m, from its whole second, at the
         * page holding position 1: the overlap's only event. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 10000);
        json_decref(cp);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-11-14T12%3A27%3A59.999Z&page=1"
                                  "&page_size=100");
        /* Nothing new: one request, the watermark stays. */
        t_feed(&w, 200, p2, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 0);
        EB_CHECK_INT(page.more, 0);
        EB_CHECK(strstr(page.detail, "overlap below is unchanged") != NULL);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[[0,1]],\"seen_at\":1700000010000,"
                       "\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T12:30:00.250Z\"}");
        eb_walk_fini(&w);

        t_src_fini(&s);
        free(p1);
        free(p2);
}

/* A list page of @p n items "id@second" (seconds after 10:00:00). */
static char *ties_page(int64_t page, int more, const char *const *items,
                       size_t n)
{
        json_t *root = json_object(), *arr = json_array();
        char *text, created[40];
        size_t i;

        for (i = 0; i < n; i++) {
                const char *at = strchr(items[i], '@');
                char id[32];

                snprintf(id, sizeof(id), "evt_%.*s", (int)(at - items[i]),
                         items[i]);
                eb_rfc3339_format(1699956000000LL +
                                          1000 * strtoll(at + 1, NULL, 10),
                                  0, created, sizeof(created));
                json_array_append_new(arr, json_pack("{ss ss ss s{ss}}", "id",
                                                     id, "created", created,
                                                     "type", "employee.created",
                                                     "data", "id", "ee_1"));
        }
        json_object_set_new(root, "items", arr);
        json_object_set_new(root, "page", json_integer(page));
        json_object_set_new(root, "has_next_page", json_boolean(more));
        text = json_dumps(root, JSON_COMPACT);
        json_decref(root);
        return text;
}

/* Feeds a page, acknowledges it, and checks the ids taken. */
static void ties_feed(struct eb_walk *w, int64_t pg, int more,
                      const char *const *items, size_t n, const char *want)
{
        struct eb_page page;
        char *body = ties_page(pg, more, items, n), got[256] = "";
        size_t i;

        eb_page_init(&page);
        t_feed(w, 200, body, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        for (i = 0; i < page.events_cnt; i++)
                snprintf(got + strlen(got), sizeof(got) - strlen(got), "%s%s",
                         i ? " " : "", page.events[i]->id + 4);
        EB_CHECK_STR(got, want);
        eb_page_fini(&page);
        w->prov->page_done(w);
        free(body);
}

#define N(a) (sizeof(a) / sizeof((a)[0]))
#define TIES_URL(ca, pg)                                                       \
        KOTA_BASE "/events?order_direction=asc&created_after=" ca "&page=" pg  \
                  "&page_size=3"

/*
 * Kota promises no order among events of one second and may give them in
 * another order on every request. With page numbers, second 1 split by a
 * page boundary was partly on neither page (g here). The walk reads it
 * again whole from page 1 until the pages' positions say every one of its
 * events was seen.
 */
static void test_kota_ties(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        static const char *const p1[] = {"a@0", "b@1", "c@1"};
        static const char *const p2[] = {"c@1", "d@1", "b@1"};
        static const char *const p3[] = {"d@1", "e@2", "f@3"};
        static const char *const p4[] = {"g@1", "b@1", "c@1"};
        static const char *const p5[] = {"d@1", "e@2", "f@3"};

        t_src_init(&s, "kota", NULL, NULL);
        s.page_size = 3;
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        ties_feed(&w, 1, 1, p1, N(p1), "a b c");
        /* Second 1 is read again whole: created_after = 10:00:01 - 1 ms. */
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A00.999Z", "1"));
        T_CHECK_CP(&w, "{\"created_after\":\"2023-11-14T10:00:00.999Z\","
                       "\"page\":1,\"wm\":\"2023-11-14T10:00:01.000Z\"}");
        ties_feed(&w, 1, 1, p2, N(p2), "d");
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A00.999Z", "2"));
        /* Page 2 starts at position 3, and second 1 ends after one item
         * of it: 4 events, 3 seen. The newer ones wait; another pass. */
        ties_feed(&w, 2, 1, p3, N(p3), "");
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A00.999Z", "1"));
        ties_feed(&w, 1, 1, p4, N(p4), "g");
        ties_feed(&w, 2, 0, p5, N(p5), "e f");
        /* Second 1 holds four events: the counts are of what was taken,
         * once each. */
        T_CHECK_CP(&w, "{\"seen\":[[0,1],[1,1],[2,4],[3,1]],"
                       "\"seen_at\":1700000000000,\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T10:00:03.000Z\"}");
        w.prov->walk_end(&w);
        eb_walk_fini(&w);
        t_src_fini(&s);
}

/* A page all of one second with more after it: that second is read alone,
 * page by page, and the walk moves on only past its last event. */
static void test_kota_dense_second(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        static const char *const p1[] = {"a@5", "b@5", "c@5"};
        static const char *const p2[] = {"b@5", "c@5", "a@5"};
        static const char *const p3[] = {"d@5", "e@6", "f@6"};
        static const char *const p4[] = {"e@6", "f@6", "g@7"};

        t_src_init(&s, "kota", NULL, NULL);
        s.page_size = 3;
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        ties_feed(&w, 1, 1, p1, N(p1), "a b c");
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A04.999Z", "1"));
        ties_feed(&w, 1, 1, p2, N(p2), "");
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A04.999Z", "2"));
        ties_feed(&w, 2, 1, p3, N(p3), "d e f");
        T_CHECK_URL(&w, TIES_URL("2023-11-14T10%3A00%3A05.999Z", "1"));
        ties_feed(&w, 1, 0, p4, N(p4), "g");
        T_CHECK_CP(&w, "{\"seen\":[[0,1],[1,2],[2,4]],"
                       "\"seen_at\":1700000000000,\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T10:00:07.000Z\"}");
        eb_walk_fini(&w);
        t_src_fini(&s);
}

/* A checkpoint of a walk over 10:00:00-10:00:20: one event at :00, two at
 * :10, one at :20 (seconds offsets from the watermark's second). */
#define OV_CP                                                                  \
        "{\"wm\":\"2023-11-14T10:00:20.000Z\",\"seen\":[[0,1],[10,2],[20,1]]," \
        "\"seen_span\":120,\"seen_at\":1700000000000}"
#define OV_URL(pg, ps)                                                         \
        KOTA_BASE "/events?order_direction=asc&created_after="                 \
                  "2023-11-14T09%3A58%3A19.999Z&page=" pg "&page_size=" ps

/*
 * The overlap is not downloaded again: the 4 events the last walk counted
 * below the recheck seconds put the first new one at position 4, so the
 * walk asks for the page holding positions 3 and 4 (pages of 3: page 2)
 * and takes it from position 4 when the boundary is there. A late event
 * in the overlap moves the boundary: the overlap is read whole.
 */
static void test_kota_overlap(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        json_t *cp = json_loads(OV_CP, 0, NULL);
        static const char *const same[] = {"d@20", "e@25", "f@26"};
        static const char *const late[] = {"c@10", "d@20", "e@25"};
        static const char *const whole1[] = {"a@0", "x@5", "b@10"};
        static const char *const whole2[] = {"c@10", "b@10", "d@20"};
        static const char *const whole3[] = {"d@20", "e@25"};

        EB_REQUIRE(cp != NULL);
        t_src_init(&s, "kota", NULL, NULL);
        s.page_size = 3;
        begin(&w, &s, cp, T_NOW_MS + 60000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, OV_URL("2", "3"));
        ties_feed(&w, 2, 0, same, N(same), "e f");
        T_CHECK_CP(&w, "{\"seen\":[[0,1],[1,1],[6,1],[16,2],[26,1]],"
                       "\"seen_at\":1700000060000,\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T10:00:26.000Z\"}");
        eb_walk_fini(&w);

        /* x@5 became visible late: the event at position 3 is :10. */
        begin(&w, &s, cp, T_NOW_MS + 60000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        ties_feed(&w, 2, 1, late, N(late), "");
        T_CHECK_URL(&w, OV_URL("1", "3"));
        ties_feed(&w, 1, 1, whole1, N(whole1), "a x b");
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-11-14T10%3A00%3A09.999Z&page=1"
                                  "&page_size=3");
        ties_feed(&w, 1, 1, whole2, N(whole2), "c d");
        ties_feed(&w, 1, 0, whole3, N(whole3), "e");
        T_CHECK_CP(&w, "{\"seen\":[[0,1],[5,1],[15,2],[20,1],[25,1]],"
                       "\"seen_at\":1700000060000,\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T10:00:25.000Z\"}");
        eb_walk_fini(&w);
        json_decref(cp);
        t_src_fini(&s);
}

static void test_kota_restart(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p2 = t_fixture(FX("v2_last_page1.json"));
        json_t *cp =
                json_pack("{sssiss}", "wm", "2023-11-14T11:00:00.500Z", "page",
                          2, "created_after", "2023-11-13T22:13:20.000Z");

        t_src_init(&s, "kota", NULL, NULL);
        begin(&w, &s, cp, T_NOW_MS + 3600000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        /* Its second is read again whole: from page 1. */
        T_CHECK_URL(&w,
                    KOTA_BASE "/events?order_direction=asc&created_after=" CA0
                              "&page=1&page_size=100");
        eb_page_init(&page);
        t_feed(&w, 200, p2, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[[0,1]],\"seen_at\":1700003600000,"
                       "\"seen_span\":120,"
                       "\"wm\":\"2023-11-14T12:30:00.250Z\"}");
        eb_walk_fini(&w);

        /* Abandoned mid-walk: the checkpoint stays as it was. */
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        w.prov->walk_end(&w);
        EB_CHECK(json_equal(w.cp, cp));
        eb_walk_fini(&w);
        json_decref(cp);

        /* A saved walk older than the 30-day window restarts at page 1
         * from the floor (its pages shifted as events expired). */
        cp = json_pack("{sssiss}", "wm", "2023-10-01T00:00:00.000Z", "page", 7,
                       "created_after", "2023-09-30T23:58:00.000Z");
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, KOTA_BASE "/events?order_direction=asc&created_after="
                                  "2023-10-15T22%3A14%3A20.000Z&page=1"
                                  "&page_size=100");
        eb_walk_fini(&w);
        json_decref(cp);

        t_src_fini(&s);
        free(p2);
}

static void test_kota_types_filter(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("v1_page1.json"));

        t_src_init(&s, "kota", NULL, "{\"types\":[\"employee.created\"]}");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        eb_page_init(&page);
        t_feed(&w, 200, p1, JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 1);
        EB_CHECK_INT(page.skipped_cnt, 1);
        EB_CHECK_STR(page.detail, "page 1: 1 events, 1 skipped, more");
        EB_REQUIRE(page.events_cnt == 1);
        EB_CHECK_STR(page.events[0]->id,
                     "evt_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* The dropped (newer) event still advances the watermark. */
        T_CHECK_CP(&w, "{\"created_after\":\"2023-11-14T10:59:59.999Z\","
                       "\"page\":1,\"wm\":\"2023-11-14T11:00:00.500Z\"}");
        eb_walk_fini(&w);
        t_src_fini(&s);
        free(p1);
}

/* ---- statuses -------------------------------------------------------- */

/* A page that says it is another page than the one asked for is a bad
 * body (eb_page_check_number). */
static void test_kota_wrong_page(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;

        t_src_init(&s, "kota", NULL, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200, "{\"items\":[],\"page\":3,\"has_next_page\":false}",
               JSON, &page);
        EB_CHECK_INT(page.kind, EB_RESP_BAD_BODY);
        EB_CHECK_STR(page.detail, "asked for page 1, got a different page");
        EB_CHECK_INT(page.events_cnt, 0);
        eb_page_fini(&page);
        eb_walk_fini(&w);
        t_src_fini(&s);
}

static void test_kota_statuses(void)
{
        static const struct t_status cases[] = {
                {200, FX("v1_page1.json"), NULL, JSON, NULL, EB_RESP_OK, 0, 2,
                 "page 1: 2 events, 0 skipped, more"},
                {401, NULL,
                 "{\"title\":\"Unauthorized\",\"status\":401,"
                 "\"error_code\":\"unauthorized\"}",
                 PROBLEM, NULL, EB_RESP_AUTH, 0, 0, "HTTP 401: Unauthorized"},
                {403, NULL, "{\"error_code\":\"forbidden\"}", PROBLEM, NULL,
                 EB_RESP_AUTH, 0, 0, "HTTP 403: forbidden"},
                {429, FX("error_429.json"), NULL, PROBLEM, "2",
                 EB_RESP_RATE_LIMITED, 2000, 0, "HTTP 429: Too many requests"},
                {429, FX("error_429.json"), NULL, PROBLEM, NULL,
                 EB_RESP_RATE_LIMITED, 0, 0, "HTTP 429"},
                {500, NULL, "{\"error_code\":\"internal_error\"}", PROBLEM,
                 NULL, EB_RESP_RETRY, 0, 0, "HTTP 500: internal_error"},
                {504, NULL, "", NULL, NULL, EB_RESP_RETRY, 0, 0, "HTTP 504"},
                {400, FX("error_400.json"), NULL, PROBLEM, NULL,
                 EB_RESP_REFUSED, 0, 0,
                 "HTTP 400: One or more validation errors occurred.: "
                 "created_after must be within the last 30 days"},
                {404, NULL, "", NULL, NULL, EB_RESP_REFUSED, 0, 0, "HTTP 404"},
                {422, NULL, "{\"title\":\"Unprocessable\"}", PROBLEM, NULL,
                 EB_RESP_REFUSED, 0, 0, "HTTP 422: Unprocessable"},
                {409, NULL, "", NULL, NULL, EB_RESP_CLIENT_ERROR, 0, 0,
                 "HTTP 409"},
                {204, NULL, "", NULL, NULL, EB_RESP_BAD_BODY, 0, 0, "HTTP 204"},
                {200, NULL, "\x01\x02garbage", JSON, NULL, EB_RESP_BAD_BODY, 0,
                 0, "invalid JSON"},
                {200, NULL, "{\"has_next_page\":false}", JSON, NULL,
                 EB_RESP_BAD_BODY, 0, 0, "page 1: no \"items\" array"},
                {200, NULL, "{\"items\":[]}", JSON, NULL, EB_RESP_BAD_BODY, 0,
                 0, "page 1: no boolean \"has_next_page\""},
                {200, NULL, "{\"items\":[],\"has_next_page\":\"no\"}", JSON,
                 NULL, EB_RESP_BAD_BODY, 0, 0,
                 "page 1: no boolean \"has_next_page\""},
                {200, FX("v2_page2.json"), NULL, JSON, NULL, EB_RESP_BAD_BODY,
                 0, 0, "asked for page 1"},
                {200, NULL,
                 "{\"items\":[{\"id\":\"evt_1\",\"type\":\"employee.created\"}"
                 "],\"has_next_page\":false}",
                 JSON, NULL, EB_RESP_OK, 0, 1,
                 "page 1: 1 events, 0 skipped; 1 poison event for the "
                 "dead-letter topic (page 1, items[0]: event evt_1: missing "
                 "or invalid \"created\" / \"created_at\")"},
                {200, NULL, "{\"items\":[\"evt_1\"],\"has_next_page\":false}",
                 JSON, NULL, EB_RESP_OK, 0, 1,
                 "page 1: 1 events, 0 skipped; 1 poison event for the "
                 "dead-letter topic (page 1, items[0]: event is not a JSON "
                 "object)"},
                /* has_next_page with no items must not loop forever. */
                {200, NULL, "{\"items\":[],\"has_next_page\":true}", JSON, NULL,
                 EB_RESP_OK, 0, 0, "page 1: 0 events, 0 skipped"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "kota", NULL, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct eb_page page;

                t_check_status(&eb_provider_kota, &s, i, &cases[i], NULL,
                               &page);
                eb_page_fini(&page);
        }
        t_src_fini(&s);
}

/* ---- normalization ---------------------------------------------------- */

static void test_kota_normalize_list(void)
{
        struct eb_source_cfg s;
        char *body = t_fixture(FX("v1_page1.json"));
        json_t *root = json_loads(body, 0, NULL), *item;
        struct eb_event *evt;
        char err[256] = "";
        int64_t t;

        EB_REQUIRE(root);
        t_src_init(&s, "kota", NULL, NULL);
        item = json_array_get(json_object_get(root, "items"), 0);
        evt = eb_provider_kota.normalize(&s, item, err, sizeof(err));
        EB_REQUIRE(evt);
        EB_CHECK_STR(evt->id, "evt_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        EB_CHECK_STR(evt->source_name, "acme");
        EB_CHECK_STR(evt->provider, "kota");
        EB_CHECK_STR(evt->account, "pt_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        EB_CHECK_STR(evt->entity_type, "employee");
        EB_CHECK_STR(evt->entity_id, "ee_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        EB_CHECK_STR(evt->action, "created");
        EB_CHECK(evt->actor == NULL);
        EB_CHECK(evt->version == NULL);
        EB_REQUIRE(eb_rfc3339_parse("2023-11-14T10:00:00Z", &t) == 0);
        EB_CHECK_INT(evt->time_ms, t);
        EB_CHECK_INT(json_object_size(evt->fields), 3);
        EB_CHECK_STR(json_string_value(json_object_get(evt->fields, "type")),
                     "employee.created");
        EB_CHECK_STR(
                json_string_value(json_object_get(evt->fields, "api_version")),
                "1.0");
        EB_CHECK(json_equal(json_object_get(evt->fields, "data"),
                            json_object_get(item, "data")));
        EB_CHECK(evt->native == item);
        eb_event_free(evt);

        /* Multi-dot type: the entity keeps its dots. */
        item = json_array_get(json_object_get(root, "items"), 1);
        evt = eb_provider_kota.normalize(&s, item, err, sizeof(err));
        EB_REQUIRE(evt);
        EB_CHECK_STR(evt->entity_type, "employer.health_insurance.quote");
        EB_CHECK_STR(evt->action, "created");
        EB_CHECK_STR(evt->entity_id, "hiq_77aa5e0e4c1b4f4f9d5e2a9b8c7d6e5f");
        EB_REQUIRE(eb_rfc3339_parse("2023-11-14T11:00:00.500Z", &t) == 0);
        EB_CHECK_INT(evt->time_ms, t);
        {
                char *type = eb_event_type(evt);

                EB_CHECK_STR(type,
                             "kota.employer.health_insurance.quote.created");
                free(type);
        }
        eb_event_free(evt);
        json_decref(root);
        free(body);
        t_src_fini(&s);
}

static void test_kota_normalize_webhooks(void)
{
        struct eb_source_cfg s;
        char *b2 = t_fixture(FX("webhook_v2.json"));
        char *b1 = t_fixture(FX("webhook_v1.json"));
        json_t *r2 = json_loads(b2, 0, NULL), *r1 = json_loads(b1, 0, NULL);
        struct eb_event *evt;
        char err[256] = "";
        int64_t t;

        EB_REQUIRE(r1 && r2);
        t_src_init(&s, "kota", NULL, NULL);
        /* v2: created_at and version "V2"; data is a thin reference. */
        evt = eb_provider_kota.normalize(&s, r2, err, sizeof(err));
        EB_REQUIRE(evt);
        EB_CHECK_STR(evt->entity_type, "employee");
        EB_CHECK_STR(evt->action, "created");
        EB_CHECK_STR(evt->entity_id, "ee_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        EB_CHECK_STR(evt->account, "pt_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        EB_REQUIRE(eb_rfc3339_parse("2024-12-01T00:00:00Z", &t) == 0);
        EB_CHECK_INT(evt->time_ms, t);
        EB_CHECK_STR(
                json_string_value(json_object_get(evt->fields, "api_version")),
                "V2");
        eb_event_free(evt);

        /* v1: created_at and api_version "1.0"; four-part type. */
        evt = eb_provider_kota.normalize(&s, r1, err, sizeof(err));
        EB_REQUIRE(evt);
        EB_CHECK_STR(evt->entity_type, "employee.health_insurance.offer");
        EB_CHECK_STR(evt->action, "action_required");
        EB_CHECK_STR(evt->entity_id, "hio_0a1b2c3d4e5f60718293a4b5c6d7e8f9");
        EB_REQUIRE(eb_rfc3339_parse("2024-12-01T09:15:30.125Z", &t) == 0);
        EB_CHECK_INT(evt->time_ms, t);
        EB_CHECK_STR(
                json_string_value(json_object_get(evt->fields, "api_version")),
                "1.0");
        eb_event_free(evt);

        json_decref(r1);
        json_decref(r2);
        free(b1);
        free(b2);
        t_src_fini(&s);
}

static void test_kota_type_table(void)
{
        static const struct {
                const char *type, *entity, *action;
        } cases[] = {
                {"employee.created", "employee", "created"},
                {"employee.updated", "employee", "updated"},
                {"employee.offboarded", "employee", "offboarded"},
                {"employer.offboarded", "employer", "offboarded"},
                {"employer.health_insurance.quote.pending_insurer_acceptance",
                 "employer.health_insurance.quote",
                 "pending_insurer_acceptance"},
                {"employee.health_insurance.policy.activated",
                 "employee.health_insurance.policy", "activated"},
                {"contribution_report.finalized", "contribution_report",
                 "finalized"},
                {"group.ready", "group", "ready"},
                {"group.employee.move.scheduled", "group.employee.move",
                 "scheduled"},
                {"policy.renewal.renewed", "policy.renewal", "renewed"},
                {"group_policy.renewal.canceled", "group_policy.renewal",
                 "canceled"},
                {"enrolment_intent.addon_selection_required",
                 "enrolment_intent", "addon_selection_required"},
                {"policy_import_intent.success", "policy_import_intent",
                 "success"},
                {"associated_person.updated", "associated_person", "updated"},
                /* No usable dot: the whole type is the entity. */
                {"ping", "ping", "event"},
                {"employee.", "employee.", "event"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "kota", NULL, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                json_t *ev =
                        json_pack("{sssssssss{ss}ss}", "id", "evt_1", "type",
                                  cases[i].type, "platform_id", "pt_1",
                                  "created", "2023-11-14T10:00:00Z", "data",
                                  "id", "x_1", "api_version", "1.0");
                struct eb_event *evt =
                        eb_provider_kota.normalize(&s, ev, err, sizeof(err));

                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->entity_type, cases[i].entity);
                EB_CHECK_STR(evt->action, cases[i].action);
                EB_CHECK_STR(evt->entity_id, "x_1");
                eb_event_free(evt);
                json_decref(ev);
        }
        t_src_fini(&s);
}

/* Optional members may be absent or null: still an event. (The events
 * normalize refuses, and why, are in test_provider_contract.c.) */
static void test_kota_normalize_optional(void)
{
        struct eb_source_cfg s;

        t_src_init(&s, "kota", NULL, NULL);
        /* data null and no platform_id: still an event. */
        {
                char err[256] = "";
                json_t *ev = json_loads(
                        "{\"id\":\"evt_1\",\"type\":\"employee.created\","
                        "\"created\":\"2023-11-14T10:00:00Z\",\"data\":null}",
                        0, NULL);
                struct eb_event *evt =
                        eb_provider_kota.normalize(&s, ev, err, sizeof(err));

                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->entity_id, "");
                EB_CHECK(evt->account == NULL);
                EB_CHECK(json_is_null(json_object_get(evt->fields, "data")));
                EB_CHECK(json_is_null(
                        json_object_get(evt->fields, "api_version")));
                eb_event_free(evt);
                json_decref(ev);
        }
        t_src_fini(&s);
}

int main(void)
{
        EB_RUN(test_kota_options);
        EB_RUN(test_kota_urls);
        EB_RUN(test_kota_stale_floor);
        EB_RUN(test_kota_walk);
        EB_RUN(test_kota_ties);
        EB_RUN(test_kota_dense_second);
        EB_RUN(test_kota_overlap);
        EB_RUN(test_kota_restart);
        EB_RUN(test_kota_types_filter);
        EB_RUN(test_kota_wrong_page);
        EB_RUN(test_kota_statuses);
        EB_RUN(test_kota_normalize_list);
        EB_RUN(test_kota_normalize_webhooks);
        EB_RUN(test_kota_type_table);
        EB_RUN(test_kota_normalize_optional);
        eb_log_shutdown();
        return eb_test_summary();
}
