/*
 * Unit tests for the provider registry (eb_provider.c) and the Kommo
 * adapter (lib/providers/kommo.c): config checks, URLs, window progression,
 * restart from a checkpoint, status classification, normalization.
 */
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_util.h"
#include "provider_test.h"

#include <errno.h>

#define KOMMO_BASE "https://acme.kommo.com"
#define FX(name)   "providers/kommo/" name
#define HAL        "application/hal+json"
#define PROBLEM    "application/problem+json"

/* now - 24h and now - 5s in unix seconds (T_NOW_MS = 1700000000000). */
#define FROM0   "1699913600"
#define Q_FROM0 "filter%5Bcreated_at%5D%5Bfrom%5D=" FROM0
#define TO0     "1699999995"
#define Q_WINDOW0                                                              \
        "filter%5Bcreated_at%5D%5Bfrom%5D=" FROM0                              \
        "&filter%5Bcreated_at%5D%5Bto%5D=" TO0

/* ---- registry and generic config checks ---------------------------- */

static void test_registry(void)
{
        const struct eb_provider *const *all = eb_provider_all();

        /* The built-in order (lib/providers/list.h), which config errors
         * list; the contract test checks each one's declarations. */
        EB_CHECK(eb_provider_lookup("Kommo") == NULL);
        EB_REQUIRE(all[0] && all[1] && all[2]);
        EB_CHECK(all[3] == NULL);
        EB_CHECK_STR(all[0]->name, "kommo");
        EB_CHECK_STR(all[1]->name, "close");
        EB_CHECK_STR(all[2]->name, "kota");
        /* Defaults the docs promise. */
        EB_CHECK(eb_provider_kommo.default_base_url == NULL);
        EB_CHECK_INT(eb_provider_kommo.default_page_size, 250);
        EB_CHECK_INT(eb_provider_kommo.max_page_size, 250);
        EB_CHECK_INT(eb_provider_kommo.default_overlap_ms, 120000);
        EB_CHECK_INT(eb_provider_kommo.default_lag_ms, 5000);
        EB_CHECK_STR(eb_provider_kommo.credential, "token");
        EB_CHECK_STR(eb_provider_close.default_base_url,
                     "https://api.close.com");
        EB_CHECK_INT(eb_provider_close.max_page_size, 50);
        EB_CHECK_INT(eb_provider_close.default_overlap_ms, 300000);
        EB_CHECK_STR(eb_provider_close.credential, "api_key");
        EB_CHECK_STR(eb_provider_kota.default_base_url, "https://api.kota.io");
        EB_CHECK_INT(eb_provider_kota.max_page_size, 100);
        EB_CHECK_STR(eb_provider_kota.credential, "api_key");
        EB_CHECK_STR(eb_resp_kind_name(EB_RESP_BANNED), "banned");
}

/* Run eb_provider_check_config on a config of two sources: a valid Close
 * source first, then @p src as sources[1]. */
static int check_cfg(struct eb_source_cfg *src, char *err, size_t errsz)
{
        struct eb_source_cfg srcs[2];
        struct eb_config cfg;
        int rc;

        memset(&cfg, 0, sizeof(cfg));
        t_src_init(&srcs[0], "close", NULL, NULL);
        srcs[1] = *src;
        cfg.sources = srcs;
        cfg.sources_cnt = 2;
        err[0] = '\0';
        rc = eb_provider_check_config(&cfg, err, errsz);
        t_src_fini(&srcs[0]);
        return rc;
}

static void test_check_config_generic(void)
{
        struct eb_source_cfg s;
        char err[512];

        t_src_init(&s, "hubspot", KOMMO_BASE, NULL);
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK_STR(err, "sources[1].provider: unknown provider \"hubspot\" "
                          "(known: kommo, close, kota)");
        t_src_fini(&s);

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        free(s.token);
        s.token = NULL;
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK_STR(err, "sources[1].credentials.token: required for provider "
                          "kommo");
        t_src_fini(&s);

        t_src_init(&s, "kommo", NULL, NULL);
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK(!strncmp(
                err, "sources[1].base_url: required for provider kommo", 48));
        t_src_fini(&s);

        t_src_init(&s, "kommo", "ftp://acme.kommo.com", NULL);
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK(!strncmp(err, "sources[1].base_url: expected an http", 37));
        t_src_fini(&s);

        t_src_init(&s, "kommo", KOMMO_BASE "/?x=1", NULL);
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK_STR(err, "sources[1].base_url: must not contain a query, a "
                          "fragment or spaces (got "
                          "\"https://acme.kommo.com/?x=1\")");
        t_src_fini(&s);

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        s.page_size = 251;
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK_STR(err, "sources[1].poll.page_size: 251 is above the "
                          "maximum for provider kommo (1..250)");
        s.page_size = 250;
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), 0);
        t_src_fini(&s);

        /* The adapter's own check runs last, with the source's path. */
        t_src_init(&s, "kommo", KOMMO_BASE, "{\"with\":[\"lead_name\",1]}");
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
        EB_CHECK_STR(err, "sources[1].options.with[1]: expected a string");
        t_src_fini(&s);

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), 0);
        EB_CHECK_STR(err, "");
        t_src_fini(&s);
}

static void test_kommo_options(void)
{
        static const struct t_opt_case cases[] = {
                {NULL, NULL},
                {"{}", NULL},
                {"{\"with\":[\"contact_name\",\"lead_name\",\"company_name\","
                 "\"catalog_name\",\"catalog_element_name\"],"
                 "\"filter_type\":[\"lead_added\",\"lead_status_changed\"],"
                 "\"filter_entity\":[\"lead\",\"catalog_1234\"],"
                 "\"filter_created_by\":[0,956328,504141]}",
                 NULL},
                {"{\"filter_type\":[\"custom_field_777777_value_changed\"]}",
                 NULL},
                {"{\"with\":[\"lead_name\",\"x\"]}",
                 "sources[0].options.with[1]: unknown value \"x\" (allowed: "
                 "contact_name, lead_name, company_name, catalog_name, "
                 "catalog_element_name)"},
                {"{\"with\":\"lead_name\"}",
                 "sources[0].options.with: expected an array of strings"},
                {"{\"with\":[\"lead_name\",\"lead_name\"]}",
                 "sources[0].options.with[1]: duplicate value \"lead_name\""},
                {"{\"filter_type\":[\"Lead Added\"]}",
                 "sources[0].options.filter_type[0]: unknown value \"Lead "
                 "Added\" (allowed: event type keys such as lead_added: "
                 "lowercase letters, digits and '_')"},
                {"{\"filter_type\":[\"lead_added\","
                 "\"custom_field_777777_value_changed\"]}",
                 "sources[0].options.filter_type[1]: "
                 "\"custom_field_777777_value_changed\" must be the only type "
                 "(Kommo accepts no other type next to "
                 "custom_field_<id>_value_changed)"},
                {"{\"filter_entity\":[\"deal\"]}",
                 "sources[0].options.filter_entity[0]: unknown value \"deal\" "
                 "(allowed: lead, contact, company, customer, task, "
                 "catalog_<id>)"},
                {"{\"filter_entity\":[\"catalog_\"]}",
                 "sources[0].options.filter_entity[0]: unknown value "
                 "\"catalog_\" (allowed: lead, contact, company, customer, "
                 "task, catalog_<id>)"},
                {"{\"filter_created_by\":[1,2,3,4,5,6,7,8,9,10,11]}",
                 "sources[0].options.filter_created_by: expected an array of "
                 "up to 10 user ids"},
                {"{\"filter_created_by\":[1,-2]}",
                 "sources[0].options.filter_created_by[1]: expected a user id "
                 "(an integer >= 0; 0 is the system)"},
                {"{\"filter_created_by\":[\"956328\"]}",
                 "sources[0].options.filter_created_by[0]: expected a user id "
                 "(an integer >= 0; 0 is the system)"},
                {"{\"filter_status\":[1]}",
                 "sources[0].options.filter_status: unknown option (allowed: "
                 "with, filter_type, filter_entity, filter_created_by)"},
                {"[1]", "sources[0].options: expected an object"},
        };

        t_check_options(&eb_provider_kommo, KOMMO_BASE, cases,
                        sizeof(cases) / sizeof(cases[0]));
}

/* ---- URLs ----------------------------------------------------------- */

static void begin(struct eb_walk *w, struct eb_source_cfg *s, json_t *cp,
                  int64_t now)
{
        eb_walk_init(w, &eb_provider_kommo, s, cp, now);
}

static void test_kommo_first_url(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        char *auth = NULL, *u1, *u2;

        t_src_init(&s, "kommo", KOMMO_BASE "/", NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_CHECK_INT(w.page_size, 250);
        EB_CHECK_INT(w.overlap_ms, 120000);
        EB_CHECK_INT(w.lag_ms, 5000);
        EB_CHECK_INT(w.start_ms, T_NOW_MS - 86400000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        u1 = t_url(&w, &auth);
        EB_CHECK_STR(u1,
                     KOMMO_BASE "/api/v4/events?page=1&limit=250&" Q_WINDOW0);
        EB_CHECK_STR(auth, "Authorization: Bearer kommo-token-abcdef");
        /* Repeatable: asking again builds the same request. */
        u2 = t_url(&w, NULL);
        EB_CHECK_STR(u2, u1);
        free(u1);
        free(u2);
        free(auth);
        eb_walk_fini(&w);
        t_src_fini(&s);
}

static void test_kommo_url_options(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;

        t_src_init(&s, "kommo", KOMMO_BASE,
                   "{\"with\":[\"contact_name\",\"lead_name\"],"
                   "\"filter_type\":[\"lead_added\",\"lead_status_changed\"],"
                   "\"filter_entity\":[\"lead\",\"catalog_12\"],"
                   "\"filter_created_by\":[0,956328]}");
        s.page_size = 100;
        free(s.poll_start);
        s.poll_start = t_strdup("2023-11-14T00:00:00Z");
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w, KOMMO_BASE
                    "/api/v4/events?with=contact_name,lead_name&page=1"
                    "&limit=100&filter%5Bcreated_at%5D%5Bfrom%5D=1699920000"
                    "&filter%5Bcreated_at%5D%5Bto%5D=" TO0
                    "&filter%5Btype%5D=lead_added,lead_status_changed"
                    "&filter%5Bentity%5D=lead,catalog_12"
                    "&filter%5Bcreated_by%5D=0,956328");
        eb_walk_fini(&w);
        t_src_fini(&s);

        /* A configured overlap/lag replaces the defaults. */
        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        s.overlap_ms = 10000;
        s.lag_ms = 0;
        {
                json_t *cp = json_pack("{sI}", "wm", (json_int_t)1699999000);

                begin(&w, &s, cp, T_NOW_MS);
                json_decref(cp);
        }
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250"
                               "&filter%5Bcreated_at%5D%5Bfrom%5D=1699998990"
                               "&filter%5Bcreated_at%5D%5Bto%5D=1700000000");
        eb_walk_fini(&w);
        t_src_fini(&s);
}

/* ---- window progression --------------------------------------------- */

/* The walk asks for page 1 of a narrower window after each full page
 * (whole seconds, not page numbers): the second fixture page answers as
 * such. */
static char *as_page1(char *body)
{
        char *p = strstr(body, "\"_page\": 2");

        if (p)
                p[strlen("\"_page\": ")] = '1';
        return body;
}

static void test_kommo_walk(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("list_page1.json"));
        char *p2 = as_page1(t_fixture(FX("list_page2_last.json")));
        char *e500 = t_fixture(FX("error_500.json"));
        json_t *cp;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250&" Q_WINDOW0);

        eb_page_init(&page);
        t_feed(&w, 200, p1, HAL, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 3);
        EB_CHECK_INT(page.more, 1);
        EB_CHECK_INT(page.full, 0);
        EB_CHECK(w.cp == NULL); /* nothing moves before the acks */
        /* The page is not acknowledged yet: the same request again. */
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250&" Q_WINDOW0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        EB_CHECK_INT(w.pages, 1);
        /* The next request reads the page's oldest second again, whole:
         * page 1 of [from, that second]. */
        T_CHECK_CP(&w, "{\"from\":" FROM0 ",\"page\":1,\"to\":" TO0
                       ",\"upper\":1665064399,\"wm\":" FROM0 "}");
        /* A second page_done without a new page changes nothing. */
        w.prov->page_done(&w);
        EB_CHECK_INT(w.pages, 1);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250&" Q_FROM0
                               "&filter%5Bcreated_at%5D%5Bto%5D=1665064399");

        /* 500 on page 2: retry the same request; page_done is a no-op. */
        t_feed(&w, 500, e500, PROBLEM, &page);
        EB_CHECK_INT(page.kind, EB_RESP_RETRY);
        EB_CHECK_STR(page.detail,
                     "HTTP 500: ErrInternalServer: internal error");
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_CP(&w, "{\"from\":" FROM0 ",\"page\":1,\"to\":" TO0
                       ",\"upper\":1665064399,\"wm\":" FROM0 "}");
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250&" Q_FROM0
                               "&filter%5Bcreated_at%5D%5Bto%5D=1665064399");

        t_feed(&w, 200, p2, HAL, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 2);
        EB_CHECK_INT(page.more, 0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        /* seen: the per-second counts of the last 2 minutes (none). */
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_span\":120,\"wm\":" TO0 "}");
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_span\":120,\"wm\":" TO0 "}");

        /* The next walk, a minute later: from = wm - 2m, to = now - 5s. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 60000);
        json_decref(cp);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250"
                               "&filter%5Bcreated_at%5D%5Bfrom%5D=1699999875"
                               "&filter%5Bcreated_at%5D%5Bto%5D=1700000055");
        /* 204 = an empty OK page: the window closes. */
        t_feed(&w, 204, NULL, NULL, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 0);
        EB_CHECK_INT(page.more, 0);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_span\":120,\"wm\":1700000055}");
        eb_walk_fini(&w);

        t_src_fini(&s);
        free(p1);
        free(p2);
        free(e500);
}

static void test_kommo_restart(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p2 = as_page1(t_fixture(FX("list_page2_last.json")));
        json_t *cp = json_pack("{sIsIsIsI}", "wm", (json_int_t)1699990000,
                               "from", (json_int_t)1699989880, "to",
                               (json_int_t)1699995000, "page", (json_int_t)2);

        /* Restarted much later: the same closed window; an older
         * checkpoint's page number is not trusted (page 1 again). */
        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        begin(&w, &s, cp, T_NOW_MS + 3600000);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250"
                               "&filter%5Bcreated_at%5D%5Bfrom%5D=1699989880"
                               "&filter%5Bcreated_at%5D%5Bto%5D=1699995000");
        eb_page_init(&page);
        t_feed(&w, 200, p2, HAL, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"wm\":1699995000}");
        eb_walk_fini(&w);

        /* walk_end without the last page acknowledged keeps the mid-walk
         * checkpoint (an abandoned walk must not skip pages). */
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        w.prov->walk_end(&w);
        EB_CHECK(w.cp && json_equal(w.cp, cp));
        eb_walk_fini(&w);

        /* Never backwards: a wm ahead of now - lag stays. */
        json_decref(cp);
        cp = json_pack("{sI}", "wm", (json_int_t)1700000100);
        begin(&w, &s, cp, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        T_CHECK_URL(&w,
                    KOMMO_BASE "/api/v4/events?page=1&limit=250"
                               "&filter%5Bcreated_at%5D%5Bfrom%5D=1699999980"
                               "&filter%5Bcreated_at%5D%5Bto%5D=" TO0);
        t_feed(&w, 204, NULL, NULL, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_span\":120,\"wm\":1700000100}");
        eb_walk_fini(&w);

        json_decref(cp);
        t_src_fini(&s);
        free(p2);
}

/* ---- status classification ---------------------------------------- */

/* A page that says it is another page than the one asked for is a bad
 * body (eb_page_check_number). */
static void test_kommo_wrong_page(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        t_feed(&w, 200,
               "{\"_page\":3,\"_embedded\":{\"events\":[]},\"_links\":{}}", HAL,
               &page);
        EB_CHECK_INT(page.kind, EB_RESP_BAD_BODY);
        EB_CHECK_STR(page.detail, "asked for page 1, got a different _page");
        EB_CHECK_INT(page.events_cnt, 0);
        eb_page_fini(&page);
        eb_walk_fini(&w);
        t_src_fini(&s);
}

static void test_kommo_statuses(void)
{
        static const struct t_status cases[] = {
                {200, FX("list_page1.json"), NULL, HAL, NULL, EB_RESP_OK, 0, 3,
                 "page 1: 3 events, more"},
                {200, FX("list_page1.json"), NULL, "application/json", NULL,
                 EB_RESP_OK, 0, 3, "page 1"},
                {204, NULL, "", NULL, NULL, EB_RESP_OK, 0, 0,
                 "page 1: 204, no events"},
                {401, FX("error_401.json"), NULL, PROBLEM, NULL, EB_RESP_AUTH,
                 0, 0, "HTTP 401: Unauthorized: Unauthorized"},
                {402, NULL, "{\"title\":\"Payment Required\",\"status\":402}",
                 PROBLEM, NULL, EB_RESP_AUTH, 0, 0,
                 "HTTP 402: Payment Required"},
                {403, NULL, "", "text/html", NULL, EB_RESP_BANNED, 0, 0,
                 "HTTP 403"},
                {429, FX("error_429.json"), NULL, PROBLEM, "7",
                 EB_RESP_RATE_LIMITED, 300000, 0,
                 "HTTP 429: Too Many Requests: You have sent"},
                {429, NULL, "", NULL, "7", EB_RESP_RATE_LIMITED, 7000, 0,
                 "HTTP 429"},
                {429, NULL, "{\"retry_after\":1.5}", PROBLEM, NULL,
                 EB_RESP_RATE_LIMITED, 1500, 0, "HTTP 429"},
                {429, NULL, "", NULL, NULL, EB_RESP_RATE_LIMITED, 0, 0,
                 "HTTP 429"},
                {500, FX("error_500.json"), NULL, PROBLEM, NULL, EB_RESP_RETRY,
                 0, 0, "HTTP 500: ErrInternalServer: internal error"},
                {502, NULL, "<html>bad gateway</html>", "text/html", NULL,
                 EB_RESP_RETRY, 0, 0, "HTTP 502: <html>bad gateway</html>"},
                {404, NULL, "", NULL, NULL, EB_RESP_CLIENT_ERROR, 0, 0,
                 "HTTP 404"},
                {422, NULL,
                 "{\"title\":\"Unprocessable\",\"detail\":\"Limit "
                 "250 per page\"}",
                 PROBLEM, NULL, EB_RESP_CLIENT_ERROR, 0, 0,
                 "HTTP 422: Unprocessable: Limit 250 per page"},
                {202, NULL, "{}", HAL, NULL, EB_RESP_BAD_BODY, 0, 0,
                 "HTTP 202"},
                {200, NULL, "<html>maintenance</html>", "text/html", NULL,
                 EB_RESP_BAD_BODY, 0, 0, "HTTP 200 with content-type"},
                {200, FX("list_page1.json"), NULL, "text/html; charset=utf-8",
                 NULL, EB_RESP_BAD_BODY, 0, 0, "HTTP 200 with content-type"},
                {200, NULL, "{\"_embedded\":{\"events\":[", HAL, NULL,
                 EB_RESP_BAD_BODY, 0, 0, "invalid JSON"},
                {200, NULL, "", HAL, NULL, EB_RESP_BAD_BODY, 0, 0,
                 "HTTP 200 with an empty body"},
                {200, NULL, "[1,2]", HAL, NULL, EB_RESP_BAD_BODY, 0, 0,
                 "expected a JSON object"},
                {200, NULL, "{\"_page\":1}", HAL, NULL, EB_RESP_BAD_BODY, 0, 0,
                 "page 1: no _embedded.events array"},
                {200, NULL, "{\"_embedded\":{\"events\":{}}}", HAL, NULL,
                 EB_RESP_BAD_BODY, 0, 0, "page 1: no _embedded.events array"},
                {200, NULL, "{\"_page\":2,\"_embedded\":{\"events\":[]}}", HAL,
                 NULL, EB_RESP_BAD_BODY, 0, 0, "asked for page 1"},
                {200, NULL,
                 "{\"_links\":{\"next\":null},\"_embedded\":{\"events\":[]}}",
                 HAL, NULL, EB_RESP_OK, 0, 0, "page 1: 0 events"},
                {200, NULL,
                 "{\"_links\":{\"next\":\"x\"},\"_embedded\":{\"events\":[]}}",
                 HAL, NULL, EB_RESP_BAD_BODY, 0, 0,
                 "page 1: _links.next is not an object"},
                {200, FX("event_missing_id.json"), NULL, HAL, NULL, EB_RESP_OK,
                 0, 2,
                 "page 1: 2 events; 1 poison event for the dead-letter topic "
                 "(page 1, events[1]: event (no id): missing or invalid "
                 "\"id\")"},
                {200, NULL, "{\"_embedded\":{\"events\":[17]}}", HAL, NULL,
                 EB_RESP_OK, 0, 1,
                 "page 1: 1 events; 1 poison event for the dead-letter topic "
                 "(page 1, events[0]: event is not a JSON object)"},
                {200, NULL, "{\"a\":1,\"a\":2}", HAL, NULL, EB_RESP_BAD_BODY, 0,
                 0, "invalid JSON"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct eb_page page;

                t_check_status(&eb_provider_kommo, &s, i, &cases[i], NULL,
                               &page);
                EB_CHECK(page.ratelimit_remaining == -1);
                eb_page_fini(&page);
        }
        t_src_fini(&s);
}

/* ---- normalization ---------------------------------------------------- */

static json_t *fixture_events(const char *name, char **bodyp)
{
        json_t *root;

        *bodyp = t_fixture(name);
        root = json_loads(*bodyp, 0, NULL);
        return root;
}

static void test_kommo_normalize_fixture(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        struct eb_event *evt;
        char *body;
        json_t *root = fixture_events(FX("list_page1.json"), &body), *item;

        EB_REQUIRE(root);
        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        eb_page_init(&page);
        t_feed(&w, 200, body, HAL, &page);
        EB_REQUIRE(page.kind == EB_RESP_OK && page.events_cnt == 3);

        /* lead_status_changed (providers.md example 2). */
        evt = page.events[0];
        item = json_array_get(
                json_object_get(json_object_get(root, "_embedded"), "events"),
                0);
        EB_CHECK_STR(evt->id, "01hx3c9q7m2k4v8r6t0w5y1zab");
        EB_CHECK_STR(evt->source_name, "acme");
        EB_CHECK_STR(evt->provider, "kommo");
        EB_CHECK_STR(evt->account, "111222333");
        EB_CHECK_STR(evt->entity_type, "lead");
        EB_CHECK_STR(evt->entity_id, "1234567");
        EB_CHECK_STR(evt->action, "status_changed");
        EB_CHECK_STR(evt->actor, "7654321");
        EB_CHECK(evt->version == NULL);
        EB_CHECK_INT(evt->time_ms, 1665064411000LL);
        EB_CHECK_INT(json_object_size(evt->fields), 5);
        EB_CHECK_STR(json_string_value(json_object_get(evt->fields, "type")),
                     "lead_status_changed");
        EB_CHECK_INT(
                json_integer_value(json_object_get(evt->fields, "created_by")),
                7654321);
        EB_CHECK(json_equal(json_object_get(evt->fields, "value_before"),
                            json_object_get(item, "value_before")));
        EB_CHECK(json_equal(json_object_get(evt->fields, "value_after"),
                            json_object_get(item, "value_after")));
        EB_CHECK_STR(
                json_string_value(json_object_get(evt->fields, "entity_name")),
                "Seminar booking");
        EB_CHECK(json_equal(evt->native, item));
        {
                char *type = eb_event_type(evt);

                EB_CHECK_STR(type, "kommo.lead.status_changed");
                free(type);
        }

        /* lead_added (providers.md example 1): no name, fields of 4. */
        evt = page.events[1];
        EB_CHECK_STR(evt->id, "01pz58t6p04ymgsgfbmfyfy1mf");
        EB_CHECK_STR(evt->action, "added");
        EB_CHECK_STR(evt->entity_id, "26060763");
        EB_CHECK_STR(evt->actor, "939801");
        EB_CHECK_INT(json_object_size(evt->fields), 4);
        EB_CHECK(json_object_get(evt->fields, "entity_name") == NULL);

        /* An unknown type passes through; created_by 0 is the system. */
        evt = page.events[2];
        EB_CHECK_STR(evt->action, "hologram_call_finished");
        EB_CHECK_STR(evt->entity_type, "lead");
        EB_CHECK(evt->actor == NULL);
        EB_CHECK_INT(
                json_integer_value(json_object_get(evt->fields, "created_by")),
                0);
        eb_page_fini(&page);
        json_decref(root);
        free(body);
        w.prov->page_done(&w);

        /* Page 2: a tag event on a contact and a catalog entity. */
        root = fixture_events(FX("list_page2_last.json"), &body);
        as_page1(body);
        t_feed(&w, 200, body, HAL, &page);
        EB_REQUIRE(page.kind == EB_RESP_OK && page.events_cnt == 2);
        EB_CHECK_STR(page.events[0]->entity_type, "contact");
        EB_CHECK_STR(page.events[0]->action, "entity_tag_added");
        EB_CHECK_STR(page.events[1]->entity_type, "catalog_5501");
        EB_CHECK_STR(page.events[1]->entity_id, "77");
        EB_CHECK_STR(page.events[1]->action, "custom_field_value_changed");
        eb_page_fini(&page);
        json_decref(root);
        free(body);

        eb_walk_fini(&w);
        t_src_fini(&s);
}

static void test_kommo_type_table(void)
{
        static const struct {
                const char *type, *entity, *action;
        } cases[] = {
                {"lead_added", "lead", "added"},
                {"lead_deleted", "lead", "deleted"},
                {"lead_restored", "lead", "restored"},
                {"lead_status_changed", "lead", "status_changed"},
                {"lead_linked", "lead", "linked"},
                {"lead_unlinked", "lead", "unlinked"},
                {"contact_added", "contact", "added"},
                {"contact_unlinked", "contact", "unlinked"},
                {"company_restored", "company", "restored"},
                {"customer_status_changed", "customer", "status_changed"},
                {"task_added", "task", "added"},
                {"task_completed", "task", "completed"},
                {"task_deadline_changed", "task", "deadline_changed"},
                {"task_result_added", "task", "result_added"},
                {"entity_tag_added", "lead", "entity_tag_added"},
                {"entity_tag_deleted", "contact", "entity_tag_deleted"},
                {"entity_responsible_changed", "contact",
                 "entity_responsible_changed"},
                {"entity_linked", "catalog_5501", "entity_linked"},
                {"entity_merged", "contact", "entity_merged"},
                {"custom_field_value_changed", "company",
                 "custom_field_value_changed"},
                {"custom_field_777777_value_changed", "lead",
                 "custom_field_777777_value_changed"},
                {"sale_field_changed", "lead", "sale_field_changed"},
                {"name_field_changed", "contact", "name_field_changed"},
                {"incoming_call", "contact", "incoming_call"},
                {"outgoing_sms", "lead", "outgoing_sms"},
                {"incoming_chat_message", "customer", "incoming_chat_message"},
                {"outgoing_chat_message", "lead", "outgoing_chat_message"},
                {"common_note_added", "lead", "common_note_added"},
                {"nps_rate_added", "lead", "nps_rate_added"},
                {"robot_replied", "lead", "robot_replied"},
                {"talk_created", "contact", "talk_created"},
                /* A type of another entity (chat-message quirk) stays. */
                {"lead_added", "contact", "lead_added"},
                /* Unknown types: generic derivation. */
                {"lead_teleported", "lead", "teleported"},
                {"hologram_projected", "lead", "hologram_projected"},
                {"lead_", "lead", "lead_"},
                {"lead", "lead", "lead"},
        };
        struct eb_source_cfg s;
        size_t i;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                json_t *ev = json_pack("{sssssisssisisIs[]s[]}", "id", "01abc",
                                       "type", cases[i].type, "entity_id", 42,
                                       "entity_type", cases[i].entity,
                                       "created_by", 5, "account_id", 9,
                                       "created_at", (json_int_t)1665064411,
                                       "value_after", "value_before");
                struct eb_event *evt =
                        eb_provider_kommo.normalize(&s, ev, err, sizeof(err));

                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->entity_type, cases[i].entity);
                EB_CHECK_STR(evt->action, cases[i].action);
                EB_CHECK_STR(
                        json_string_value(json_object_get(evt->fields, "type")),
                        cases[i].type);
                eb_event_free(evt);
                json_decref(ev);
        }
        t_src_fini(&s);
}

/* Optional members may be absent or null: still an event. (The events
 * normalize refuses, and why, are in test_provider_contract.c.) */
static void test_kommo_normalize_optional(void)
{
        struct eb_source_cfg s;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        /* Optional members may be absent or null. */
        {
                char err[256] = "";
                json_t *ev = json_loads(
                        "{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_"
                        "type\":"
                        "\"lead\",\"created_at\":1,\"created_by\":null}",
                        0, NULL);
                struct eb_event *evt =
                        eb_provider_kommo.normalize(&s, ev, err, sizeof(err));

                EB_REQUIRE(evt);
                EB_CHECK_STR(evt->entity_id, "");
                EB_CHECK(evt->actor == NULL);
                EB_CHECK(evt->account == NULL);
                EB_CHECK(json_is_null(
                        json_object_get(evt->fields, "value_after")));
                eb_event_free(evt);
                json_decref(ev);
        }
        t_src_fini(&s);
}

/* Slices (w->slice_ms): closed windows [wm, wm + slice] while that ends
 * before now - lag, marked "cut" in every checkpoint of the window; the
 * walk after one starts at its "to" without the overlap. */
static void test_kommo_slices(void)
{
        struct eb_source_cfg s;
        struct eb_walk w;
        struct eb_page page;
        char *p1 = t_fixture(FX("list_page1.json"));
        json_t *cp;

        t_src_init(&s, "kommo", KOMMO_BASE, NULL);
        begin(&w, &s, NULL, T_NOW_MS);
        w.slice_ms = 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        EB_CHECK_INT(w.resumed, 0);
        T_CHECK_URL(&w, KOMMO_BASE "/api/v4/events?page=1&limit=250"
                                   "&filter%5Bcreated_at%5D%5Bfrom%5D="
                                   "1699913600&filter%5Bcreated_at%5D%5Bto%5D"
                                   "=1699917200");
        t_feed(&w, 200, p1, HAL, &page);
        EB_CHECK_INT(page.more, 1);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        T_CHECK_CP(&w, "{\"cut\":true,\"from\":1699913600,\"page\":1,"
                       "\"to\":1699917200,\"upper\":1665064399,"
                       "\"wm\":1699913600}");
        /* A restart resumes the same window, still a slice. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 1000);
        json_decref(cp);
        w.slice_ms = 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        EB_CHECK_INT(w.resumed, 1);
        t_feed(&w, 204, "", NULL, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"cut\":true,\"wm\":1699917200}");

        /* The next slice starts at wm: no overlap. */
        cp = json_incref(w.cp);
        eb_walk_fini(&w);
        begin(&w, &s, cp, T_NOW_MS + 2000);
        w.slice_ms = 7200 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 1);
        T_CHECK_URL(&w, KOMMO_BASE "/api/v4/events?page=1&limit=250"
                                   "&filter%5Bcreated_at%5D%5Bfrom%5D="
                                   "1699917200&filter%5Bcreated_at%5D%5Bto%5D"
                                   "=1699924400");
        eb_walk_fini(&w);

        /* Reaching now - lag: the usual window up to now - lag, no cut. */
        begin(&w, &s, cp, T_NOW_MS + 2000);
        json_decref(cp);
        w.slice_ms = 24LL * 3600 * 1000;
        EB_REQUIRE(w.prov->walk_begin(&w) == 0);
        EB_CHECK_INT(w.cut, 0);
        T_CHECK_URL(&w, KOMMO_BASE "/api/v4/events?page=1&limit=250"
                                   "&filter%5Bcreated_at%5D%5Bfrom%5D="
                                   "1699917200&filter%5Bcreated_at%5D%5Bto%5D"
                                   "=1699999997");
        t_feed(&w, 204, "", NULL, &page);
        eb_page_fini(&page);
        w.prov->page_done(&w);
        w.prov->walk_end(&w);
        T_CHECK_CP(&w, "{\"seen\":[],\"seen_span\":120,\"wm\":1699999997}");
        eb_walk_fini(&w);
        t_src_fini(&s);
        free(p1);
}

int main(void)
{
        EB_RUN(test_registry);
        EB_RUN(test_check_config_generic);
        EB_RUN(test_kommo_options);
        EB_RUN(test_kommo_first_url);
        EB_RUN(test_kommo_url_options);
        EB_RUN(test_kommo_slices);
        EB_RUN(test_kommo_walk);
        EB_RUN(test_kommo_restart);
        EB_RUN(test_kommo_wrong_page);
        EB_RUN(test_kommo_statuses);
        EB_RUN(test_kommo_normalize_fixture);
        EB_RUN(test_kommo_type_table);
        EB_RUN(test_kommo_normalize_optional);
        eb_log_shutdown();
        return eb_test_summary();
}
