/*
 * test_sim: evbridge-sim behaves like the three platforms' event APIs and
 * webhook senders (docs/simulator.md), checked from the outside: the
 * simulator runs as a child process and is driven over HTTP with libcurl.
 *
 * Webhook signatures are verified independently of the simulator's code,
 * with the openssl command-line tool.
 */
#include <curl/curl.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "eb_test.h"
#include "eb_time.h"
#include "sim_harness.h"

#define TMO 10000L

static long tmo(void)
{
        return (long)EB_T_TMOUT((int)TMO);
}

/* GET an account path and parse the body (NULL when empty/unparsable). */
static json_t *get_json(const struct eb_sim *sim, const char *acct,
                        const char *path, long *status)
{
        struct eb_sim_resp r;
        char url[2048], auth[512];
        json_t *root = NULL;

        *status = -1;
        if (eb_sim_url(sim, acct, path, url, sizeof(url)) < 0 ||
            eb_sim_auth(sim, acct, auth, sizeof(auth)) < 0)
                return NULL;
        if (eb_sim_get(url, auth, tmo(), &r) == 0) {
                *status = r.status;
                if (r.len)
                        root = json_loadb(r.body, r.len, 0, NULL);
        }
        eb_sim_resp_free(&r);
        return root;
}

static int get_raw(const struct eb_sim *sim, const char *acct, const char *path,
                   long timeout, struct eb_sim_resp *r)
{
        char url[2048], auth[512];

        eb_sim_url(sim, acct, path, url, sizeof(url));
        eb_sim_auth(sim, acct, auth, sizeof(auth));
        return eb_sim_get(url, auth, timeout, r);
}

/* POST a control request; @returns the "generated"/"consolidated" ids of
 * @p acct in @p field (new reference) or NULL. */
static json_t *control_ids(const struct eb_sim *sim, const char *json,
                           const char *field, const char *acct)
{
        struct eb_sim_resp r;
        json_t *root, *ids = NULL;

        if (eb_sim_control(sim, json, &r) != 200) {
                eb_sim_resp_free(&r);
                return NULL;
        }
        root = json_loadb(r.body, r.len, 0, NULL);
        eb_sim_resp_free(&r);
        if (root)
                ids = json_incref(
                        json_object_get(json_object_get(root, field), acct));
        json_decref(root);
        return ids;
}

static json_t *generate(const struct eb_sim *sim, const char *acct, int n)
{
        char body[256];

        snprintf(body, sizeof(body), "{\"target\":\"%s\",\"generate\":%d}",
                 acct, n);
        return control_ids(sim, body, "generated", acct);
}

static int set(const struct eb_sim *sim, const char *target,
               const char *set_json)
{
        char body[1024];

        snprintf(body, sizeof(body), "{\"target\":\"%s\",\"set\":%s}", target,
                 set_json);
        return eb_sim_control(sim, body, NULL) == 200 ? 0 : -1;
}

static const char *sget(const json_t *o, const char *k)
{
        return json_string_value(json_object_get(o, k));
}

/* never NULL: "" stands for a missing string */
static const char *nz(const char *s)
{
        return s ? s : "";
}

static json_t *account_stats(const struct eb_sim *sim, const char *acct)
{
        char path[128];
        json_t *root, *a;

        snprintf(path, sizeof(path), "/_sim/stats?account=%s", acct);
        root = eb_sim_get_json(sim, path);
        a = json_incref(json_array_get(json_object_get(root, "accounts"), 0));
        json_decref(root);
        return a;
}

static json_int_t stat_int(const json_t *st, const char *k1, const char *k2)
{
        const json_t *v = json_object_get(st, k1);

        if (k2)
                v = json_object_get(v, k2);
        return json_integer_value(v);
}

/* ---- start-up line ------------------------------------------------------- */

static void test_startup_line(void)
{
        const char *args[] = {"--accounts", "kommo=1,close=2,kota=1", "--rate",
                              "0", NULL};
        struct eb_sim sim;
        const char *s;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        EB_CHECK(sim.port > 0);
        EB_CHECK_INT(json_array_size(json_object_get(sim.info, "accounts")), 4);
        EB_CHECK(eb_sim_account(&sim, "kommo-2") == NULL);
        EB_CHECK_STR(eb_sim_str(&sim, "kommo-1", "credentials.token"),
                     "kommo-token-kommo-1");
        EB_CHECK_STR(eb_sim_str(&sim, "close-2", "credentials.api_key"),
                     "close-key-close-2");
        EB_CHECK_STR(eb_sim_str(&sim, "kota-1", "credentials.api_key"),
                     "pk_test_kota-1");
        EB_CHECK_STR(eb_sim_str(&sim, "kota-1", "webhook.secret"),
                     "whsec_kota-1");
        EB_CHECK_STR(eb_sim_str(&sim, "kommo-1", "webhook.token"),
                     "kommo-hook-kommo-1");
        s = eb_sim_str(&sim, "close-1", "webhook.secret");
        EB_CHECK(s && strlen(s) == 64 && strspn(s, "0123456789abcdef") == 64);
        EB_CHECK(s && eb_sim_str(&sim, "close-2", "webhook.secret") &&
                 strcmp(s, eb_sim_str(&sim, "close-2", "webhook.secret")));
        s = eb_sim_str(&sim, "close-1", "base_url");
        EB_CHECK(s && strstr(s, "/close/close-1") &&
                 !strncmp(s, sim.origin, strlen(sim.origin)));
        EB_CHECK(!strncmp(
                nz(eb_sim_str(&sim, "close-1", "webhook.subscription_id")),
                "whsub_", 6));
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- Kommo -----------------------------------------------------------------
 */

static size_t count_type(const json_t *events, const char *type)
{
        size_t i, n = 0;
        json_t *e;

        json_array_foreach(events, i, e) n += !strcmp(sget(e, "type"), type);
        return n;
}

static void test_kommo_pagination(void)
{
        const char *args[] = {
                "--strict", "off", "--accounts", "kommo=1,close=0,kota=0",
                "--rate",   "0",   "--limits",   "off",
                NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *ids, *root, *evs, *e, *all = NULL;
        long st;
        size_t i;
        char path[512];
        const char *t1, *t2;
        int ok;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        /* nothing yet: 204 with no body */
        EB_CHECK(get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r) == 0);
        EB_CHECK_INT(r.status, 204);
        EB_CHECK_INT(r.len, 0);
        eb_sim_resp_free(&r);

        ids = generate(&sim, "kommo-1", 250);
        EB_REQUIRE(ids && json_array_size(ids) == 250);
        /* exactly one full page: no next link, no empty extra page */
        root = get_json(&sim, "kommo-1", "/api/v4/events?limit=250", &st);
        EB_CHECK_INT(st, 200);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK_INT(json_array_size(evs), 250);
        EB_CHECK_INT(json_integer_value(json_object_get(root, "_page")), 1);
        EB_CHECK(json_object_get(json_object_get(root, "_links"), "self"));
        EB_CHECK(!json_object_get(json_object_get(root, "_links"), "next"));
        /* newest first: the reverse of creation order */
        ok = 1;
        json_array_foreach(evs, i, e) ok &= !strcmp(
                sget(e, "id"), json_string_value(json_array_get(ids, 249 - i)));
        EB_CHECK(ok);
        all = json_incref(evs);
        json_decref(root);
        root = get_json(&sim, "kommo-1", "/api/v4/events?limit=250&page=2",
                        &st);
        EB_CHECK_INT(st, 204);
        EB_CHECK(root == NULL);
        json_decref(ids);

        /* one more: now there is a next page holding exactly it */
        ids = generate(&sim, "kommo-1", 1);
        root = get_json(&sim, "kommo-1", "/api/v4/events?limit=250", &st);
        EB_CHECK(json_object_get(json_object_get(root, "_links"), "next"));
        EB_CHECK(strstr(nz(json_string_value(json_object_get(
                                json_object_get(json_object_get(root, "_links"),
                                                "next"),
                                "href"))),
                        "page=2"));
        json_decref(root);
        root = get_json(&sim, "kommo-1", "/api/v4/events?limit=250&page=2",
                        &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK_INT(json_array_size(evs), 1);
        json_decref(root);
        json_decref(ids);
        /* default limit 50 */
        root = get_json(&sim, "kommo-1", "/api/v4/events", &st);
        EB_CHECK_INT(json_array_size(json_object_get(
                             json_object_get(root, "_embedded"), "events")),
                     50);
        json_decref(root);

        /* limit above 250: 422 problem+json */
        EB_CHECK(get_raw(&sim, "kommo-1", "/api/v4/events?limit=251", tmo(),
                         &r) == 0);
        EB_CHECK_INT(r.status, 422);
        EB_CHECK(strstr(r.content_type, "application/problem+json"));
        EB_CHECK(strstr(r.body, "Limit 250 per page"));
        eb_sim_resp_free(&r);

        /* filters on type: plain, array and comma forms */
        t1 = sget(json_array_get(all, 0), "type");
        t2 = NULL;
        json_array_foreach(all, i, e) if (strcmp(sget(e, "type"), t1))
        {
                t2 = sget(e, "type");
                break;
        }
        EB_REQUIRE(t2);
        snprintf(path, sizeof(path), "/api/v4/events?limit=250&filter[type]=%s",
                 t1);
        root = get_json(&sim, "kommo-1", path, &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK_INT(json_array_size(evs), count_type(all, t1));
        EB_CHECK_INT(count_type(evs, t1), json_array_size(evs));
        json_decref(root);
        snprintf(path, sizeof(path),
                 "/api/v4/events?limit=250&filter%%5Btype%%5D%%5B%%5D=%s&"
                 "filter[type][]=%s",
                 t1, t2);
        root = get_json(&sim, "kommo-1", path, &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK_INT(json_array_size(evs),
                     count_type(all, t1) + count_type(all, t2));
        json_decref(root);
        snprintf(path, sizeof(path),
                 "/api/v4/events?limit=250&filter[type]=%s,%s", t1, t2);
        root = get_json(&sim, "kommo-1", path, &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK_INT(json_array_size(evs),
                     count_type(all, t1) + count_type(all, t2));
        json_decref(root);

        /* entity + entity_id, and entity_id alone is a 400 */
        e = NULL;
        json_array_foreach(
                all, i, e) if (!strcmp(sget(e, "entity_type"), "lead")) break;
        EB_REQUIRE(e);
        snprintf(
                path, sizeof(path),
                "/api/v4/events?limit=250&filter[entity]=lead&"
                "filter[entity_id]=%lld",
                (long long)json_integer_value(json_object_get(e, "entity_id")));
        root = get_json(&sim, "kommo-1", path, &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        EB_CHECK(json_array_size(evs) >= 1);
        ok = 1;
        json_array_foreach(evs, i, e) ok &=
                !strcmp(sget(e, "entity_type"), "lead") &&
                json_integer_value(json_object_get(e, "entity_id")) ==
                        json_integer_value(json_object_get(
                                json_array_get(evs, 0), "entity_id"));
        EB_CHECK(ok);
        json_decref(root);
        root = get_json(&sim, "kommo-1", "/api/v4/events?filter[entity_id]=1",
                        &st);
        EB_CHECK_INT(st, 400);
        EB_CHECK(json_object_get(root, "validation-errors"));
        json_decref(root);
        root = get_json(&sim, "kommo-1",
                        "/api/v4/events?limit=250&filter[created_by]=0", &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        ok = 1;
        json_array_foreach(evs, i, e) ok &=
                json_integer_value(json_object_get(e, "created_by")) == 0;
        EB_CHECK(ok);
        json_decref(root);

        /* time filters: a future window is empty (204), single value is
         * "created after" */
        snprintf(path, sizeof(path),
                 "/api/v4/events?filter[created_at][from]=%lld",
                 (long long)time(NULL) + 3600);
        EB_CHECK(get_raw(&sim, "kommo-1", path, tmo(), &r) == 0);
        EB_CHECK_INT(r.status, 204);
        EB_CHECK_INT(r.len, 0);
        eb_sim_resp_free(&r);
        /* the newest event overall (`all` predates the one generated
         * since, which may fall in a later second) */
        root = get_json(&sim, "kommo-1", "/api/v4/events?limit=1", &st);
        snprintf(path, sizeof(path), "/api/v4/events?filter[created_at]=%lld",
                 (long long)json_integer_value(json_object_get(
                         json_array_get(
                                 json_object_get(
                                         json_object_get(root, "_embedded"),
                                         "events"),
                                 0),
                         "created_at")));
        json_decref(root);
        root = get_json(&sim, "kommo-1", path, &st);
        EB_CHECK_INT(st, 204); /* nothing strictly after the newest second */
        json_decref(root);

        /* with=lead_name adds names to _embedded.entity */
        root = get_json(&sim, "kommo-1",
                        "/api/v4/events?limit=250&with=lead_name,contact_name",
                        &st);
        evs = json_object_get(json_object_get(root, "_embedded"), "events");
        ok = 0;
        json_array_foreach(evs, i, e)
        {
                json_t *ent = json_object_get(json_object_get(e, "_embedded"),
                                              "entity");
                if (!strcmp(sget(e, "entity_type"), "lead"))
                        ok += json_is_string(json_object_get(ent, "name"));
                EB_CHECK(json_is_object(json_object_get(ent, "_links")));
        }
        EB_CHECK(ok > 0);
        json_decref(root);
        e = json_object_get(
                json_object_get(json_array_get(all, 0), "_embedded"), "entity");
        EB_CHECK(!json_object_get(e, "name"));

        /* single event; unknown id answers 204 */
        snprintf(path, sizeof(path), "/api/v4/events/%s",
                 sget(json_array_get(all, 3), "id"));
        root = get_json(&sim, "kommo-1", path, &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK(json_equal(root, json_array_get(all, 3)));
        json_decref(root);
        EB_CHECK(get_raw(&sim, "kommo-1",
                         "/api/v4/events/01zzzzzzzzzzzzzzzzzzzzzzzz", tmo(),
                         &r) == 0);
        EB_CHECK_INT(r.status, 204);
        eb_sim_resp_free(&r);
        json_decref(all);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* A closed window keeps its pages stable while new events arrive. */
static void test_kommo_closed_window(void)
{
        const char *args[] = {
                "--strict",  "off", "--accounts",     "kommo=1,close=0,kota=0",
                "--rate",    "0",   "--limits",       "off",
                "--backlog", "600", "--backlog-span", "10m",
                NULL};
        struct eb_sim sim;
        json_t *truth, *seen = json_object(), *t, *root, *evs, *e;
        long long to;
        size_t i, expect = 0, got = 0, dups = 0;
        long st;
        int page;
        char path[256];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        to = (long long)time(NULL) - 1;
        truth = eb_sim_truth(&sim, "?account=kommo-1");
        json_array_foreach(truth, i, t) expect +=
                json_integer_value(json_object_get(t, "created_ms")) / 1000 <=
                to;
        EB_CHECK(expect > 500);
        for (page = 1; page <= 4; page++) {
                snprintf(path, sizeof(path),
                         "/api/v4/events?limit=250&page=%d&"
                         "filter[created_at][from]=0&"
                         "filter[created_at][to]=%lld",
                         page, to);
                root = get_json(&sim, "kommo-1", path, &st);
                if (page == 1) /* new events arrive mid-walk */
                        json_decref(generate(&sim, "kommo-1", 300));
                if (st == 204) {
                        json_decref(root);
                        break;
                }
                evs = json_object_get(json_object_get(root, "_embedded"),
                                      "events");
                json_array_foreach(evs, i, e)
                {
                        if (json_object_get(seen, sget(e, "id")))
                                dups++;
                        json_object_set_new(seen, sget(e, "id"), json_true());
                        got++;
                        EB_CHECK(json_integer_value(json_object_get(
                                         e, "created_at")) <= to);
                }
                json_decref(root);
        }
        EB_CHECK_INT(dups, 0);
        EB_CHECK_INT(got, expect);
        EB_CHECK_INT(json_object_size(seen), expect);
        json_decref(seen);
        json_decref(truth);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- Close
 * ------------------------------------------------------------------- */

static json_t *close_page(const struct eb_sim *sim, const char *acct,
                          const char *query, long *st)
{
        char path[1024];

        snprintf(path, sizeof(path), "/api/v1/event/%s", query);
        return get_json(sim, acct, path, st);
}

static void test_close_pagination(void)
{
        const char *args[] = {
                "--strict",      "off", "--accounts", "kommo=0,close=1,kota=0",
                "--rate",        "0",   "--limits",   "off",
                "--consolidate", "0",   NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *ids, *p1, *p2, *p3, *d, *e;
        long st;
        size_t i;
        int ok;
        char q[1024];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        p1 = close_page(&sim, "close-1", "", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_array_size(json_object_get(p1, "data")), 0);
        EB_CHECK(json_is_null(json_object_get(p1, "cursor_next")));
        json_decref(p1);

        ids = generate(&sim, "close-1", 100);
        EB_REQUIRE(ids && json_array_size(ids) == 100);
        p1 = close_page(&sim, "close-1", "", &st);
        d = json_object_get(p1, "data");
        EB_CHECK_INT(json_array_size(d), 50);
        EB_CHECK(json_is_string(json_object_get(p1, "cursor_next")));
        EB_CHECK(json_is_null(json_object_get(p1, "cursor_previous")));
        ok = 1;
        json_array_foreach(d, i, e) ok &= !strcmp(
                sget(e, "id"), json_string_value(json_array_get(ids, 99 - i)));
        EB_CHECK(ok);
        e = json_array_get(d, 0);
        EB_CHECK(!strncmp(nz(sget(e, "id")), "ev_", 3));
        EB_CHECK(strlen(nz(sget(e, "date_updated"))) == 26); /* us, no TZ */
        EB_CHECK(!strncmp(nz(sget(e, "organization_id")), "orga_", 5));
        EB_CHECK(json_object_get(e, "changed_fields") &&
                 json_object_get(e, "meta") &&
                 json_object_get(e, "previous_data") &&
                 json_object_get(e, "request_id"));
        snprintf(q, sizeof(q), "?_cursor=%s", nz(sget(p1, "cursor_next")));
        p2 = close_page(&sim, "close-1", q, &st);
        d = json_object_get(p2, "data");
        EB_CHECK_INT(json_array_size(d), 50);
        /* exact boundary: no cursor to an empty page */
        EB_CHECK(json_is_null(json_object_get(p2, "cursor_next")));
        EB_CHECK(json_is_string(json_object_get(p2, "cursor_previous")));
        ok = 1;
        json_array_foreach(d, i, e) ok &= !strcmp(
                sget(e, "id"), json_string_value(json_array_get(ids, 49 - i)));
        EB_CHECK(ok);
        /* cursor_previous leads back to the newer page */
        snprintf(q, sizeof(q), "?_cursor=%s", nz(sget(p2, "cursor_previous")));
        p3 = close_page(&sim, "close-1", q, &st);
        EB_CHECK(json_equal(json_object_get(p3, "data"),
                            json_object_get(p1, "data")));
        json_decref(p3);
        json_decref(p2);

        /* _limit above 50 is capped */
        p2 = close_page(&sim, "close-1", "?_limit=500", &st);
        EB_CHECK_INT(json_array_size(json_object_get(p2, "data")), 50);
        json_decref(p2);
        p2 = close_page(&sim, "close-1", "?_limit=7", &st);
        EB_CHECK_INT(json_array_size(json_object_get(p2, "data")), 7);
        json_decref(p2);
        /* empty window */
        p2 = close_page(&sim, "close-1",
                        "?date_updated__gte=2100-01-01T00:00:00", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_array_size(json_object_get(p2, "data")), 0);
        EB_CHECK(json_is_null(json_object_get(p2, "cursor_next")));
        json_decref(p2);
        p2 = close_page(&sim, "close-1",
                        "?date_updated__lt=2000-01-01T00:00:00.000000", &st);
        EB_CHECK_INT(json_array_size(json_object_get(p2, "data")), 0);
        json_decref(p2);

        /* filter combinations */
        e = json_array_get(json_object_get(p1, "data"), 0);
        snprintf(q, sizeof(q), "?object_id=%s", sget(e, "object_id"));
        p2 = close_page(&sim, "close-1", q, &st);
        EB_CHECK_INT(st, 400);
        EB_CHECK(json_is_string(json_object_get(p2, "error")));
        json_decref(p2);
        p2 = close_page(&sim, "close-1", "?action=updated", &st);
        EB_CHECK_INT(st, 400);
        json_decref(p2);
        snprintf(q, sizeof(q), "?object_type=%s&action=%s",
                 sget(e, "object_type"), sget(e, "action"));
        p2 = close_page(&sim, "close-1", q, &st);
        EB_CHECK_INT(st, 200);
        d = json_object_get(p2, "data");
        EB_CHECK(json_array_size(d) >= 1);
        ok = 1;
        json_array_foreach(d, i, e) ok &=
                !strcmp(sget(e, "object_type"),
                        sget(json_array_get(json_object_get(p1, "data"), 0),
                             "object_type"));
        EB_CHECK(ok);
        json_decref(p2);
        e = json_array_get(json_object_get(p1, "data"), 0);
        snprintf(q, sizeof(q), "?lead_id=%s&_limit=50", sget(e, "lead_id"));
        p2 = close_page(&sim, "close-1", q, &st);
        EB_CHECK_INT(st, 200);
        d = json_object_get(p2, "data");
        ok = json_array_size(d) >= 1;
        json_array_foreach(d, i, e) ok &=
                !strcmp(sget(e, "lead_id"),
                        sget(json_array_get(json_object_get(p1, "data"), 0),
                             "lead_id"));
        EB_CHECK(ok);
        json_decref(p2);
        p2 = close_page(&sim, "close-1", "?_cursor=notacursor", &st);
        EB_CHECK_INT(st, 400);
        json_decref(p2);

        /* single event */
        snprintf(q, sizeof(q), "/api/v1/event/%s/",
                 sget(json_array_get(json_object_get(p1, "data"), 2), "id"));
        p2 = get_json(&sim, "close-1", q, &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK(
                json_equal(p2, json_array_get(json_object_get(p1, "data"), 2)));
        json_decref(p2);
        EB_CHECK(get_raw(&sim, "close-1", "/api/v1/event/ev_nope/", tmo(),
                         &r) == 0);
        EB_CHECK_INT(r.status, 404);
        eb_sim_resp_free(&r);
        json_decref(p1);
        json_decref(ids);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* Walk every page of a Close account; @returns {id: event} (new). */
static json_t *close_walk(const struct eb_sim *sim, const char *acct,
                          size_t *dups, size_t *count, int *ordered)
{
        json_t *seen = json_object(), *page, *e;
        char q[1024] = "?_limit=50";
        char last[64] = "9999";
        long st;
        size_t i;
        int guard = 0;

        *dups = 0;
        *count = 0;
        *ordered = 1;
        while (guard++ < 1000) {
                const char *cur;

                page = close_page(sim, acct, q, &st);
                if (st != 200) {
                        json_decref(page);
                        break;
                }
                json_array_foreach(json_object_get(page, "data"), i, e)
                {
                        const char *du = sget(e, "date_updated");
                        if (json_object_get(seen, sget(e, "id")))
                                (*dups)++;
                        json_object_set(seen, sget(e, "id"), e);
                        (*count)++;
                        if (strcmp(du, last) > 0)
                                *ordered = 0;
                        snprintf(last, sizeof(last), "%s", du);
                }
                cur = sget(page, "cursor_next");
                if (!cur) {
                        json_decref(page);
                        break;
                }
                snprintf(q, sizeof(q), "?_limit=50&_cursor=%s", cur);
                json_decref(page);
        }
        return seen;
}

static void test_close_consolidation(void)
{
        const char *args[] = {"--strict",
                              "off",
                              "--accounts",
                              "kommo=0,close=2,kota=0",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--consolidate",
                              "close-1=0",
                              "--consolidate",
                              "close-2=1",
                              "--entities",
                              "close-2=4",
                              "--consolidate-window",
                              "close-2=1h",
                              NULL};
        struct eb_sim sim;
        json_t *ids, *cons, *before, *after, *truth, *t, *st2;
        size_t dups, count, i, nv = 0, nsup = 0;
        int ordered;
        char q[256];
        long st;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        ids = generate(&sim, "close-1", 60);
        EB_REQUIRE(ids && json_array_size(ids) == 60);
        usleep(20000); /* later date_updated for the rewrite */
        before = close_walk(&sim, "close-1", &dups, &count, &ordered);
        EB_CHECK_INT(json_object_size(before), 60);
        cons = control_ids(&sim, "{\"target\":\"close-1\",\"consolidate\":3}",
                           "consolidated", "close-1");
        EB_REQUIRE(cons && json_array_size(cons) == 3);
        /* the rewritten events are now the newest, in place (same id) */
        after = close_page(&sim, "close-1", "?_limit=3", &st);
        for (i = 0; i < 3; i++) {
                json_t *n = json_array_get(json_object_get(after, "data"), i);
                json_t *o = json_object_get(before, sget(n, "id"));
                int found = 0;
                size_t j;

                for (j = 0; j < 3; j++)
                        found |= !strcmp(
                                sget(n, "id"),
                                json_string_value(json_array_get(cons, j)));
                EB_CHECK(found);
                EB_REQUIRE(o);
                EB_CHECK(strcmp(sget(n, "date_updated"),
                                sget(o, "date_updated")) > 0);
                EB_CHECK_STR(sget(n, "date_created"), sget(o, "date_created"));
                EB_CHECK(!json_equal(json_object_get(n, "data"),
                                     json_object_get(o, "data")));
                /* changed_fields only grow: the fold adds this update's
                 * fields; previous_data keeps the oldest values */
                {
                        json_t *of = json_object_get(o, "changed_fields"), *f;
                        json_t *nf = json_object_get(n, "changed_fields");
                        size_t a, b;
                        int all = 1;
                        json_array_foreach(of, a, f)
                        {
                                int in = 0;
                                json_t *g;
                                json_array_foreach(nf, b, g) in |=
                                        json_equal(f, g);
                                all &= in;
                        }
                        EB_CHECK(all);
                        EB_CHECK(json_array_size(nf) >= 2);
                }
        }
        json_decref(after);
        /* a fresh cursor walk returns every current event exactly once */
        after = close_walk(&sim, "close-1", &dups, &count, &ordered);
        EB_CHECK_INT(dups, 0);
        EB_CHECK_INT(count, 60);
        EB_CHECK(ordered);
        json_decref(after);
        /* ground truth: two versions for each rewritten event */
        truth = eb_sim_truth(&sim, "?account=close-1");
        EB_CHECK_INT(json_array_size(truth), 63);
        json_array_foreach(truth, i, t)
        {
                const char *id = sget(t, "id");
                size_t j;
                for (j = 0; j < 3; j++)
                        if (!strcmp(id, json_string_value(
                                                json_array_get(cons, j)))) {
                                nv++;
                                nsup += json_is_true(
                                        json_object_get(t, "superseded"));
                                EB_CHECK(json_is_string(
                                        json_object_get(t, "version")));
                        }
        }
        EB_CHECK_INT(nv, 6);
        EB_CHECK_INT(nsup, 3);
        json_decref(truth);
        json_decref(cons);
        json_decref(before);
        json_decref(ids);

        /* automatic consolidation under generation */
        ids = generate(&sim, "close-2", 80);
        EB_REQUIRE(ids);
        st2 = account_stats(&sim, "close-2");
        EB_CHECK(stat_int(st2, "consolidations", NULL) > 0);
        EB_CHECK(stat_int(st2, "versions", NULL) >
                 stat_int(st2, "events", NULL));
        after = close_walk(&sim, "close-2", &dups, &count, &ordered);
        EB_CHECK_INT(dups, 0);
        EB_CHECK_INT(count, stat_int(st2, "events", NULL));
        EB_CHECK(ordered);
        /* ids returned by generate name existing events (folds repeat) */
        snprintf(q, sizeof(q), "/api/v1/event/%s/",
                 json_string_value(json_array_get(ids, 79)));
        t = get_json(&sim, "close-2", q, &st);
        EB_CHECK_INT(st, 200);
        json_decref(t);
        json_decref(after);
        json_decref(st2);
        json_decref(ids);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- Kota
 * ---------------------------------------------------------------------- */

static void test_kota_pagination(void)
{
        const char *args[] = {
                "--strict", "off", "--accounts", "kommo=0,close=0,kota=1",
                "--rate",   "0",   "--limits",   "off",
                NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *ids, *more, *p, *items, *e, *walk;
        long st;
        size_t i;
        int ok, page;
        char q[256];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        p = get_json(&sim, "kota-1", "/events", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_array_size(json_object_get(p, "items")), 0);
        EB_CHECK(json_is_false(json_object_get(p, "has_next_page")));
        json_decref(p);
        ids = generate(&sim, "kota-1", 100);
        EB_REQUIRE(ids && json_array_size(ids) == 100);
        p = get_json(&sim, "kota-1", "/events?page_size=100", &st);
        items = json_object_get(p, "items");
        EB_CHECK_INT(json_array_size(items), 100);
        EB_CHECK_INT(json_integer_value(json_object_get(p, "total_count")),
                     100);
        EB_CHECK(json_is_false(json_object_get(p, "has_next_page")));
        EB_CHECK(json_is_false(json_object_get(p, "has_previous_page")));
        ok = 1; /* default order: newest first */
        json_array_foreach(items, i, e) ok &= !strcmp(
                sget(e, "id"), json_string_value(json_array_get(ids, 99 - i)));
        EB_CHECK(ok);
        e = json_array_get(items, 0);
        EB_CHECK(!strncmp(nz(sget(e, "id")), "evt_", 4));
        EB_CHECK(!strncmp(nz(sget(e, "platform_id")), "pt_", 3));
        EB_CHECK(json_is_string(json_object_get(e, "created")) &&
                 json_is_object(json_object_get(e, "data")));
        json_decref(p);
        p = get_json(&sim, "kota-1", "/events?page_size=100&page=2", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_array_size(json_object_get(p, "items")), 0);
        EB_CHECK(json_is_true(json_object_get(p, "has_previous_page")));
        EB_CHECK(json_is_false(json_object_get(p, "has_next_page")));
        json_decref(p);
        /* default page size 10 */
        p = get_json(&sim, "kota-1", "/events", &st);
        EB_CHECK_INT(json_array_size(json_object_get(p, "items")), 10);
        EB_CHECK(json_is_true(json_object_get(p, "has_next_page")));
        json_decref(p);
        /* page_size above 100: 400 problem+json */
        EB_CHECK(get_raw(&sim, "kota-1", "/events?page_size=101", tmo(), &r) ==
                 0);
        EB_CHECK_INT(r.status, 400);
        EB_CHECK(strstr(r.content_type, "application/problem+json"));
        EB_CHECK(strstr(r.body, "invalid_request"));
        eb_sim_resp_free(&r);
        p = get_json(&sim, "kota-1", "/events?order_direction=up", &st);
        EB_CHECK_INT(st, 400);
        json_decref(p);
        /* empty window */
        p = get_json(&sim, "kota-1",
                     "/events?created_after=2100-01-01T00:00:00Z", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_array_size(json_object_get(p, "items")), 0);
        EB_CHECK_INT(json_integer_value(json_object_get(p, "total_count")), 0);
        json_decref(p);

        /* ascending walk: new events arrive at the end, pages stay put */
        walk = json_array();
        for (page = 1; page <= 10; page++) {
                snprintf(q, sizeof(q),
                         "/events?order_direction=asc&page_size=40&page=%d",
                         page);
                p = get_json(&sim, "kota-1", q, &st);
                json_array_extend(walk, json_object_get(p, "items"));
                if (page == 1) {
                        more = generate(&sim, "kota-1", 10);
                        json_array_extend(ids, more);
                        json_decref(more);
                }
                ok = json_is_true(json_object_get(p, "has_next_page"));
                json_decref(p);
                if (!ok)
                        break;
        }
        EB_CHECK_INT(json_array_size(walk), 110);
        ok = 1;
        json_array_foreach(walk, i, e) ok &= !strcmp(
                sget(e, "id"), json_string_value(json_array_get(ids, i)));
        EB_CHECK(ok);
        json_decref(walk);

        /* v1 hides v2-only types and renders api_version 1.0 */
        p = get_json(&sim, "kota-1", "/events?version=v1&page_size=100", &st);
        items = json_object_get(p, "items");
        EB_CHECK(json_integer_value(json_object_get(p, "total_count")) <= 110);
        ok = 1;
        json_array_foreach(items, i, e)
        {
                const char *t = sget(e, "type");
                ok &= !strcmp(nz(sget(e, "api_version")), "1.0");
                ok &= !strncmp(t, "employe", 7) ||
                      !strncmp(t, "contribution_report.", 20);
                ok &= strcmp(t, "employee.health_insurance.policy.imported") !=
                      0;
        }
        EB_CHECK(ok);
        json_decref(p);
        p = get_json(&sim, "kota-1", "/events?version=v2&page_size=100", &st);
        e = json_object_get(json_array_get(json_object_get(p, "items"), 0),
                            "data");
        EB_CHECK(json_is_string(json_object_get(e, "resource_type")));
        EB_CHECK(json_is_string(json_object_get(e, "object")));
        json_decref(p);
        /* single event */
        snprintf(q, sizeof(q), "/events/%s",
                 json_string_value(json_array_get(ids, 5)));
        p = get_json(&sim, "kota-1", q, &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_STR(sget(p, "id"), json_string_value(json_array_get(ids, 5)));
        json_decref(p);
        p = get_json(&sim, "kota-1", "/events/evt_nope", &st);
        EB_CHECK_INT(st, 404);
        json_decref(p);
        json_decref(ids);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

static void iso_days_ago(int days, char *buf, size_t sz)
{
        time_t t = time(NULL) - (time_t)days * 86400;
        struct tm tm;

        gmtime_r(&t, &tm);
        strftime(buf, sz, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static void test_kota_retention(void)
{
        const char *args[] = {
                "--strict",  "off", "--accounts",     "kommo=0,close=0,kota=1",
                "--rate",    "0",   "--limits",       "off",
                "--backlog", "200", "--backlog-span", "40d",
                NULL};
        struct eb_sim sim;
        json_t *p, *items;
        long st;
        json_int_t total;
        char q[256], cutoff[64], old[64];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        iso_days_ago(30, cutoff, sizeof(cutoff));
        p = get_json(&sim, "kota-1",
                     "/events?order_direction=asc&page_size=100", &st);
        EB_CHECK_INT(st, 200);
        total = json_integer_value(json_object_get(p, "total_count"));
        EB_CHECK(total > 100 && total < 200); /* ~3/4 of 40 days */
        items = json_object_get(p, "items");
        /* the oldest served event is within the last 30 days */
        EB_CHECK(strncmp(nz(sget(json_array_get(items, 0), "created")), cutoff,
                         19) >= 0); /* to the second */
        json_decref(p);
        iso_days_ago(31, old, sizeof(old));
        snprintf(q, sizeof(q), "/events?created_after=%s", old);
        p = get_json(&sim, "kota-1", q, &st);
        EB_CHECK_INT(st, 400);
        EB_CHECK(strstr(nz(sget(p, "detail")), "30 days"));
        json_decref(p);
        EB_CHECK(set(&sim, "kota-1", "{\"kota_created_after\":\"clamp\"}") ==
                 0);
        p = get_json(&sim, "kota-1", q, &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT(json_integer_value(json_object_get(p, "total_count")),
                     total);
        json_decref(p);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- auth
 * ------------------------------------------------------------------------ */

static long status_with(const struct eb_sim *sim, const char *acct,
                        const char *path, const char *auth)
{
        struct eb_sim_resp r;
        char url[512];
        long st;

        eb_sim_url(sim, acct, path, url, sizeof(url));
        eb_sim_get(url, auth, tmo(), &r);
        st = r.status;
        eb_sim_resp_free(&r);
        return st;
}

static void test_auth(void)
{
        const char *args[] = {
                "--strict",  "off", "--accounts", "kommo=1,close=1,kota=1",
                "--rate",    "0",   "--limits",   "off",
                "--backlog", "5",   NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        char good[512], url[512];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        EB_CHECK_INT(status_with(&sim, "kommo-1", "/api/v4/events", NULL), 401);
        EB_CHECK_INT(
                status_with(&sim, "kommo-1", "/api/v4/events", "Bearer wrong"),
                401);
        eb_sim_auth(&sim, "kommo-1", good, sizeof(good));
        EB_CHECK_INT(status_with(&sim, "kommo-1", "/api/v4/events", good), 200);
        EB_CHECK_INT(status_with(&sim, "close-1", "/api/v1/event/", NULL), 401);
        /* wrong key, right key with a password, Bearer with the key */
        EB_CHECK_INT(status_with(&sim, "close-1", "/api/v1/event/",
                                 "Basic d3Jvbmc6"), /* "wrong:" */
                     401);
        EB_CHECK_INT(status_with(&sim, "close-1", "/api/v1/event/",
                                 /* "close-key-close-1:pw" */
                                 "Basic Y2xvc2Uta2V5LWNsb3NlLTE6cHc="),
                     401);
        EB_CHECK_INT(status_with(&sim, "close-1", "/api/v1/event/",
                                 "Bearer close-key-close-1"),
                     401);
        EB_CHECK_INT(status_with(&sim, "close-1", "/api/v1/event/",
                                 /* "close-key-close-1:" */
                                 "Basic Y2xvc2Uta2V5LWNsb3NlLTE6"),
                     200);
        EB_CHECK_INT(status_with(&sim, "kota-1", "/events", NULL), 401);
        EB_CHECK_INT(
                status_with(&sim, "kota-1", "/events", "Bearer pk_test_kota-2"),
                401);
        eb_sim_auth(&sim, "kota-1", good, sizeof(good));
        EB_CHECK_INT(status_with(&sim, "kota-1", "/events", good), 200);
        eb_sim_url(&sim, "kota-1", "/events", url, sizeof(url));
        eb_sim_get(url, "Bearer nope", tmo(), &r);
        EB_CHECK(strstr(r.content_type, "application/problem+json"));
        EB_CHECK(strstr(r.body, "\"unauthorized\""));
        eb_sim_resp_free(&r);
        eb_sim_url(&sim, "kommo-1", "/api/v4/events", url, sizeof(url));
        eb_sim_get(url, NULL, tmo(), &r);
        EB_CHECK(strstr(r.content_type, "application/problem+json"));
        eb_sim_resp_free(&r);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- rate limits ------------------------------------------------------------
 */

static void test_rate_limits(void)
{
        const char *args[] = {"--strict",
                              "off",
                              "--accounts",
                              "kommo=1,close=1,kota=1",
                              "--rate",
                              "0",
                              "--kommo-rps",
                              "2",
                              "--kommo-ban-after",
                              "3",
                              "--kommo-ban-duration",
                              "60s",
                              "--close-limit",
                              "3",
                              "--close-window",
                              "5s",
                              "--kota-rps",
                              "2",
                              NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *body, *stt;
        int i, saw429 = 0, saw403 = 0, frac = 0, every = 1, n429 = 0;
        char *h;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        /* Kommo: 429 with retry_after, then a 403 ban */
        for (i = 0; i < 40 && !saw403; i++) {
                get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
                if (r.status == 429) {
                        saw429++;
                        body = json_loadb(r.body, r.len, 0, NULL);
                        EB_CHECK(strstr(r.content_type,
                                        "application/problem+json"));
                        EB_CHECK(json_integer_value(json_object_get(
                                         body, "retry_after")) >= 1);
                        EB_CHECK_INT(json_integer_value(
                                             json_object_get(body, "status")),
                                     429);
                        json_decref(body);
                } else if (r.status == 403) {
                        saw403 = 1;
                        EB_CHECK(saw429 >= 3);
                }
                eb_sim_resp_free(&r);
        }
        EB_CHECK(saw429 >= 3);
        EB_CHECK(saw403);
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 403); /* the ban holds for every request */
        eb_sim_resp_free(&r);
        stt = account_stats(&sim, "kommo-1");
        EB_CHECK(json_is_true(json_object_get(stt, "banned")));
        EB_CHECK(stat_int(stt, "status", "429") >= 3);
        json_decref(stt);

        /* Close: RateLimit on every response, Retry-After on 429 */
        for (i = 0; i < 8; i++) {
                double reset = -1;
                int lim = -1, rem = -1;

                get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
                h = eb_sim_resp_header(&r, "RateLimit");
                if (!h || sscanf(h, "limit=%d, remaining=%d, reset=%lf", &lim,
                                 &rem, &reset) != 3) {
                        every = 0;
                } else {
                        frac |= strchr(h, '.') != NULL;
                        EB_CHECK_INT(lim, 3);
                        EB_CHECK(reset > 0 && reset <= 5.0);
                }
                if (r.status == 429) {
                        char *ra = eb_sim_resp_header(&r, "Retry-After");
                        long v = ra ? strtol(ra, NULL, 10) : -1;
                        n429++;
                        EB_CHECK(ra && strspn(ra, "0123456789") == strlen(ra));
                        EB_CHECK(v >= 1 && v <= 5 && v >= reset &&
                                 v < reset + 1);
                        EB_CHECK_INT(rem, 0);
                        free(ra);
                } else {
                        EB_CHECK_INT(r.status, 200);
                }
                free(h);
                eb_sim_resp_free(&r);
        }
        EB_CHECK(every);
        EB_CHECK(frac);
        EB_CHECK(n429 >= 1);

        /* Kota: problem+json rate_limit_exceeded */
        saw429 = 0;
        for (i = 0; i < 20 && !saw429; i++) {
                get_raw(&sim, "kota-1", "/events", tmo(), &r);
                if (r.status == 429) {
                        saw429 = 1;
                        EB_CHECK(strstr(r.content_type,
                                        "application/problem+json"));
                        EB_CHECK(strstr(r.body, "\"rate_limit_exceeded\""));
                }
                eb_sim_resp_free(&r);
        }
        EB_CHECK(saw429);
        /* limits off: no more 429 */
        EB_CHECK(set(&sim, "kota", "{\"limits\":\"off\"}") == 0);
        for (i = 0; i < 10; i++) {
                get_raw(&sim, "kota-1", "/events", tmo(), &r);
                EB_CHECK_INT(r.status, 200);
                eb_sim_resp_free(&r);
        }
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- faults
 * -------------------------------------------------------------------- */

static void fault(const struct eb_sim *sim, const char *acct, const char *spec)
{
        char body[256];

        snprintf(body, sizeof(body), "{\"faults\":\"%s\"}", spec);
        EB_CHECK(set(sim, acct, body) == 0);
}

static void test_faults(void)
{
        const char *args[] = {
                "--strict",  "off", "--accounts", "kommo=2,close=1,kota=1",
                "--rate",    "0",   "--limits",   "off",
                "--backlog", "20",  "--slow-ms",  "3000",
                NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *j, *stt;
        char *h;
        int i;
        long seq[4];

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        /* status codes */
        fault(&sim, "kommo-1", "500@next=1");
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 500);
        EB_CHECK(strstr(r.content_type, "application/problem+json"));
        eb_sim_resp_free(&r);
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 200); /* next=1 is used up */
        eb_sim_resp_free(&r);
        fault(&sim, "close-1", "502@next=1");
        get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
        EB_CHECK_INT(r.status, 502);
        EB_CHECK(strstr(r.content_type, "text/html"));
        eb_sim_resp_free(&r);
        fault(&sim, "kota-1", "503@next=1");
        get_raw(&sim, "kota-1", "/events", tmo(), &r);
        EB_CHECK_INT(r.status, 503);
        h = eb_sim_resp_header(&r, "Retry-After");
        EB_CHECK(h != NULL);
        free(h);
        eb_sim_resp_free(&r);

        /* slow beyond the client timeout */
        fault(&sim, "close-1", "slow@next=1");
        EB_CHECK_INT(get_raw(&sim, "close-1", "/api/v1/event/", 500, &r),
                     CURLE_OPERATION_TIMEDOUT);
        eb_sim_resp_free(&r);
        get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);

        /* connection reset mid-body */
        fault(&sim, "kommo-1", "reset@next=1");
        EB_CHECK(get_raw(&sim, "kommo-1", "/api/v4/events?limit=20", tmo(),
                         &r) != CURLE_OK);
        EB_CHECK(r.len < 200000);
        eb_sim_resp_free(&r);
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);

        /* truncated and malformed JSON: 200 that does not parse */
        fault(&sim, "kota-1", "truncated@next=1");
        get_raw(&sim, "kota-1", "/events", tmo(), &r);
        EB_CHECK_INT(r.curl_rc, CURLE_OK);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK(r.len > 0);
        j = json_loadb(r.body, r.len, 0, NULL);
        EB_CHECK(j == NULL);
        json_decref(j);
        eb_sim_resp_free(&r);
        fault(&sim, "close-1", "malformed@next=1");
        get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK(r.len > 0);
        j = json_loadb(r.body, r.len, 0, NULL);
        EB_CHECK(j == NULL);
        json_decref(j);
        eb_sim_resp_free(&r);

        /* wrong content type */
        fault(&sim, "kommo-1", "html@next=1");
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK(strstr(r.content_type, "text/html"));
        EB_CHECK(strstr(r.body, "<html>"));
        eb_sim_resp_free(&r);

        /* schedule: every 2nd request */
        fault(&sim, "kota-1", "504@every=2");
        for (i = 0; i < 4; i++) {
                get_raw(&sim, "kota-1", "/events", tmo(), &r);
                seq[i] = r.status;
                eb_sim_resp_free(&r);
        }
        EB_CHECK(seq[0] == 200 && seq[1] == 504 && seq[2] == 200 &&
                 seq[3] == 504);
        /* probability 1, then cleared; time window */
        fault(&sim, "close-1", "500=1");
        for (i = 0; i < 3; i++) {
                get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
                EB_CHECK_INT(r.status, 500);
                EB_CHECK(strstr(r.body, "\"error\""));
                eb_sim_resp_free(&r);
        }
        fault(&sim, "close-1", "none");
        fault(&sim, "kota-1", "503@for=1h");
        get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);
        get_raw(&sim, "kota-1", "/events", tmo(), &r);
        EB_CHECK_INT(r.status, 503);
        eb_sim_resp_free(&r);
        fault(&sim, "kota-1", "none");

        /* one account down does not affect the others */
        EB_CHECK(set(&sim, "kommo-1", "{\"down\":\"503\"}") == 0);
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 503);
        eb_sim_resp_free(&r);
        get_raw(&sim, "kommo-2", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);
        EB_CHECK(set(&sim, "kommo-1", "{\"down\":\"reset\"}") == 0);
        EB_CHECK(get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r) !=
                 CURLE_OK);
        EB_CHECK_INT(r.status, 0);
        eb_sim_resp_free(&r);
        get_raw(&sim, "close-1", "/api/v1/event/", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);
        EB_CHECK(set(&sim, "kommo-1", "{\"down\":\"off\"}") == 0);
        get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 200);
        eb_sim_resp_free(&r);

        stt = account_stats(&sim, "kommo-1");
        EB_CHECK(stat_int(stt, "faults", "reset") >= 2);
        EB_CHECK(stat_int(stt, "faults", "html") == 1);
        EB_CHECK(stat_int(stt, "status", "5xx") >= 2);
        json_decref(stt);
        /* bad fault spec is refused and changes nothing */
        EB_CHECK(eb_sim_control(&sim,
                                "{\"target\":\"kota-1\",\"set\":{\"faults\":"
                                "\"teapot=1\"}}",
                                NULL) == 400);
        EB_CHECK_INT(eb_sim_stop(&sim), 0); /* the slow reply is held */
}

/* max_concurrent shows parallel requests to one account */
static void test_concurrency_stats(void)
{
        const char *args[] = {
                "--strict",     "off", "--accounts", "kommo=1,close=0,kota=0",
                "--rate",       "0",   "--limits",   "off",
                "--latency-ms", "400", NULL};
        struct eb_sim sim;
        CURLM *multi;
        CURL *easy[4];
        struct curl_slist *hdr = NULL;
        char url[512], auth[512], line[600];
        int running = 1, i;
        json_t *stt;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        eb_sim_url(&sim, "kommo-1", "/api/v4/events", url, sizeof(url));
        eb_sim_auth(&sim, "kommo-1", auth, sizeof(auth));
        snprintf(line, sizeof(line), "Authorization: %s", auth);
        hdr = curl_slist_append(hdr, line);
        multi = curl_multi_init();
        for (i = 0; i < 4; i++) {
                easy[i] = curl_easy_init();
                curl_easy_setopt(easy[i], CURLOPT_URL, url);
                curl_easy_setopt(easy[i], CURLOPT_HTTPHEADER, hdr);
                curl_easy_setopt(easy[i], CURLOPT_TIMEOUT_MS, tmo());
                curl_multi_add_handle(multi, easy[i]);
        }
        while (running) {
                curl_multi_perform(multi, &running);
                if (running)
                        curl_multi_poll(multi, NULL, 0, 100, NULL);
        }
        for (i = 0; i < 4; i++) {
                curl_multi_remove_handle(multi, easy[i]);
                curl_easy_cleanup(easy[i]);
        }
        curl_multi_cleanup(multi);
        curl_slist_free_all(hdr);
        stt = account_stats(&sim, "kommo-1");
        EB_CHECK(stat_int(stt, "max_concurrent", NULL) >= 2);
        EB_CHECK_INT(stat_int(stt, "concurrent", NULL), 0);
        EB_CHECK_INT(stat_int(stt, "requests", NULL), 4);
        json_decref(stt);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- ground truth ------------------------------------------------------- */

static json_t *by_id(json_t *truth, const char *acct)
{
        json_t *o = json_object(), *t;
        size_t i;

        json_array_foreach(truth, i, t) if (!strcmp(sget(t, "account"), acct))
                json_object_set(o, sget(t, "id"), t);
        return o;
}

static json_t *read_lines(const char *path)
{
        FILE *fp = fopen(path, "r");
        json_t *arr = json_array();
        char *line = NULL;
        size_t cap = 0;

        while (fp && getline(&line, &cap, fp) > 0) {
                json_t *j = json_loads(line, 0, NULL);
                if (j)
                        json_array_append_new(arr, j);
        }
        free(line);
        if (fp)
                fclose(fp);
        return arr;
}

static void test_truth(void)
{
        char dump[] = "/tmp/eb_sim_dump_XXXXXX";
        int fd = mkstemp(dump);
        const char *args[] = {
                "--strict",      "off", "--accounts", "kommo=1,close=1,kota=1",
                "--rate",        "0",   "--limits",   "off",
                "--consolidate", "0",   "--backlog",  "20",
                "--dump",        dump,  NULL};
        struct eb_sim sim;
        json_t *truth, *idx, *page, *items, *e, *t, *file;
        long st;
        size_t i, served;
        const char *accts[3] = {"kommo-1", "close-1", "kota-1"};
        const char *paths[3] = {"/api/v4/events?limit=5",
                                "/api/v1/event/?_limit=5",
                                "/events?page_size=5"};
        int k;

        EB_REQUIRE(fd >= 0);
        close(fd);
        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        truth = eb_sim_truth(&sim, NULL);
        EB_CHECK_INT(json_array_size(truth), 60);
        served = 0;
        json_array_foreach(truth, i, t)
        {
                served += json_is_true(json_object_get(t, "served"));
                /* late_visibility 0 (strict off): visible at its own time */
                EB_REQUIRE(json_is_integer(json_object_get(t, "visible_ms")));
                EB_CHECK(json_integer_value(json_object_get(t, "visible_ms")) ==
                         json_integer_value(json_object_get(t, "updated_ms")));
        }
        EB_CHECK_INT(served, 0);
        json_decref(truth);
        for (k = 0; k < 3; k++) {
                page = get_json(&sim, accts[k], paths[k], &st);
                EB_CHECK_INT(st, 200);
                items = k == 0 ? json_object_get(
                                         json_object_get(page, "_embedded"),
                                         "events")
                        : k == 1 ? json_object_get(page, "data")
                                 : json_object_get(page, "items");
                EB_CHECK_INT(json_array_size(items), 5);
                truth = eb_sim_truth(&sim, NULL);
                idx = by_id(truth, accts[k]);
                json_array_foreach(items, i, e)
                {
                        t = json_object_get(idx, sget(e, "id"));
                        EB_REQUIRE(t);
                        EB_CHECK(json_is_true(json_object_get(t, "served")));
                        /* native is the event exactly as served */
                        EB_CHECK(json_equal(json_object_get(t, "native"), e));
                        if (k == 1) {
                                char ty[128];
                                snprintf(ty, sizeof(ty), "%s.%s",
                                         nz(sget(e, "object_type")),
                                         nz(sget(e, "action")));
                                EB_CHECK_STR(sget(t, "type"), ty);
                        } else {
                                EB_CHECK_STR(sget(t, "type"), sget(e, "type"));
                        }
                }
                served = 0;
                json_array_foreach(truth, i,
                                   t) if (!strcmp(sget(t, "account"), accts[k]))
                        served += json_is_true(json_object_get(t, "served"));
                EB_CHECK_INT(served, 5);
                json_decref(idx);
                json_decref(truth);
                json_decref(page);
        }
        /* served=1 filter and the dump written at SIGTERM */
        truth = eb_sim_truth(&sim, "?served=1");
        EB_CHECK_INT(json_array_size(truth), 15);
        json_decref(truth);
        truth = eb_sim_truth(&sim, NULL);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        file = read_lines(dump);
        EB_CHECK_INT(json_array_size(file), json_array_size(truth));
        EB_CHECK(json_equal(file, truth));
        json_decref(file);
        json_decref(truth);
        unlink(dump);
}

/* ---- webhooks
 * -------------------------------------------------------------------- */

struct hook_rec {
        char path[512];
        char *body;
        size_t len;
        char ctype[128];
        char sig_hash[128];
        char sig_ts[64];
        char kota_sig[256];
        int answered;
};

struct receiver {
        struct event_base *base;
        struct evhttp *http;
        int port;
        struct hook_rec recs[512];
        size_t n;
        int fail_next;    /* answer 500 to this many requests first */
        int never_answer; /* keep every request unanswered */
};

static void copy_hdr(struct evkeyvalq *h, const char *name, char *dst,
                     size_t sz)
{
        const char *v = evhttp_find_header(h, name);

        snprintf(dst, sz, "%s", v ? v : "");
}

static void on_hook(struct evhttp_request *req, void *arg)
{
        struct receiver *rc = arg;
        struct evbuffer *in = evhttp_request_get_input_buffer(req);
        struct evkeyvalq *h = evhttp_request_get_input_headers(req);
        struct hook_rec *rec;
        size_t len = evbuffer_get_length(in);
        int status = 200;

        if (rc->n >= sizeof(rc->recs) / sizeof(rc->recs[0])) {
                evhttp_send_reply(req, 200, "OK", NULL);
                return;
        }
        rec = &rc->recs[rc->n++];
        snprintf(rec->path, sizeof(rec->path), "%s",
                 evhttp_request_get_uri(req));
        rec->body = malloc(len + 1);
        evbuffer_copyout(in, rec->body, len);
        rec->body[len] = '\0';
        rec->len = len;
        copy_hdr(h, "Content-Type", rec->ctype, sizeof(rec->ctype));
        copy_hdr(h, "close-sig-hash", rec->sig_hash, sizeof(rec->sig_hash));
        copy_hdr(h, "close-sig-timestamp", rec->sig_ts, sizeof(rec->sig_ts));
        copy_hdr(h, "x-kota-webhook-signature", rec->kota_sig,
                 sizeof(rec->kota_sig));
        if (rc->never_answer)
                return;
        if (rc->fail_next > 0) {
                rc->fail_next--;
                status = 500;
        }
        rec->answered = status;
        evhttp_send_reply(req, status, status == 200 ? "OK" : "Error", NULL);
}

static int receiver_start(struct receiver *rc)
{
        struct evhttp_bound_socket *bs;
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        memset(rc, 0, sizeof(*rc));
        rc->base = event_base_new();
        rc->http = evhttp_new(rc->base);
        evhttp_set_gencb(rc->http, on_hook, rc);
        bs = evhttp_bind_socket_with_handle(rc->http, "127.0.0.1", 0);
        if (!bs)
                return -1;
        getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                    &sl);
        rc->port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        return 0;
}

static void receiver_free(struct receiver *rc)
{
        size_t i;

        for (i = 0; i < rc->n; i++)
                free(rc->recs[i].body);
        evhttp_free(rc->http);
        event_base_free(rc->base);
}

static void pump(struct receiver *rc, size_t want, int ms)
{
        struct timespec t0, t1;
        struct timeval tv = {0, 50 * 1000};

        clock_gettime(CLOCK_MONOTONIC, &t0);
        while (rc->n < want) {
                event_base_loopexit(rc->base, &tv);
                event_base_dispatch(rc->base);
                clock_gettime(CLOCK_MONOTONIC, &t1);
                if ((t1.tv_sec - t0.tv_sec) * 1000 +
                            (t1.tv_nsec - t0.tv_nsec) / 1000000 >
                    ms)
                        break;
        }
}

/* Independent HMAC-SHA256 with the openssl CLI. @p keyopt is
 * "hexkey:<hex>" or "key:<string>". */
static int openssl_hmac(const char *keyopt, const char *msg, size_t len,
                        char out[65])
{
        char path[] = "/tmp/eb_sim_hmac_XXXXXX";
        char cmd[1024], line[512];
        const char *eq;
        FILE *fp;
        int fd = mkstemp(path), rc = -1;

        if (fd < 0)
                return -1;
        if (write(fd, msg, len) != (ssize_t)len) {
                close(fd);
                unlink(path);
                return -1;
        }
        close(fd);
        snprintf(cmd, sizeof(cmd),
                 "openssl dgst -sha256 -mac HMAC -macopt '%s' '%s' 2>&1",
                 keyopt, path);
        fp = popen(cmd, "r");
        if (fp && fgets(line, sizeof(line), fp)) {
                eq = strstr(line, "= ");
                if (eq && strlen(eq + 2) >= 64) {
                        memcpy(out, eq + 2, 64);
                        out[64] = '\0';
                        rc = 0;
                }
        }
        if (fp)
                pclose(fp);
        unlink(path);
        return rc;
}

static int hexval(int c)
{
        if (c >= '0' && c <= '9')
                return c - '0';
        if (c >= 'a' && c <= 'f')
                return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
                return c - 'A' + 10;
        return -1;
}

/* Decode one application/x-www-form-urlencoded component in place. */
static void form_decode(char *s)
{
        char *o = s;

        for (; *s; s++) {
                if (*s == '+') {
                        *o++ = ' ';
                } else if (*s == '%' && hexval(s[1]) >= 0 &&
                           hexval(s[2]) >= 0) {
                        *o++ = (char)(hexval(s[1]) * 16 + hexval(s[2]));
                        s += 2;
                } else {
                        *o++ = *s;
                }
        }
        *o = '\0';
}

/* @returns new object {decoded key: decoded value}. */
static json_t *parse_form(const char *body)
{
        json_t *o = json_object();
        char *copy = strdup(body), *save = NULL, *tok;

        for (tok = strtok_r(copy, "&", &save); tok;
             tok = strtok_r(NULL, "&", &save)) {
                char *eq = strchr(tok, '=');
                if (!eq)
                        continue;
                *eq = '\0';
                form_decode(tok);
                form_decode(eq + 1);
                json_object_set_new(o, tok, json_string(eq + 1));
        }
        free(copy);
        return o;
}

static json_int_t scheduled(const struct eb_sim *sim, const char *acct)
{
        json_t *stt = account_stats(sim, acct);
        json_int_t n = stat_int(stt, "webhooks", "scheduled");

        json_decref(stt);
        return n;
}

static void check_close_hook(const struct eb_sim *sim, struct hook_rec *rec)
{
        char keyopt[200], mac[65], *msg;
        json_t *b;
        size_t tl = strlen(rec->sig_ts);

        EB_CHECK(strstr(rec->ctype, "application/json"));
        EB_CHECK(strlen(rec->sig_hash) == 64);
        EB_CHECK(tl > 0 && strspn(rec->sig_ts, "0123456789") == tl);
        snprintf(keyopt, sizeof(keyopt), "hexkey:%s",
                 eb_sim_str(sim, "close-1", "webhook.secret"));
        msg = malloc(tl + rec->len + 1);
        memcpy(msg, rec->sig_ts, tl);
        memcpy(msg + tl, rec->body, rec->len);
        EB_CHECK(openssl_hmac(keyopt, msg, tl + rec->len, mac) == 0);
        EB_CHECK_STR(mac, rec->sig_hash);
        free(msg);
        b = json_loadb(rec->body, rec->len, 0, NULL);
        EB_CHECK(!strncmp(nz(sget(json_object_get(b, "event"), "id")), "ev_",
                          3));
        EB_CHECK_STR(sget(b, "subscription_id"),
                     eb_sim_str(sim, "close-1", "webhook.subscription_id"));
        json_decref(b);
}

static void check_kota_hook(const struct eb_sim *sim, struct hook_rec *rec)
{
        char keyopt[200], mac[65], ts[32], v1[80], *msg;
        json_t *b;
        size_t tl;

        EB_CHECK(strstr(rec->ctype, "application/json"));
        EB_REQUIRE(sscanf(rec->kota_sig, "t=%31[0-9],v1=%79[0-9a-f]", ts, v1) ==
                   2);
        tl = strlen(ts);
        snprintf(keyopt, sizeof(keyopt), "key:%s",
                 eb_sim_str(sim, "kota-1", "webhook.secret"));
        msg = malloc(tl + 1 + rec->len + 1);
        memcpy(msg, ts, tl);
        msg[tl] = '.';
        memcpy(msg + tl + 1, rec->body, rec->len);
        EB_CHECK(openssl_hmac(keyopt, msg, tl + 1 + rec->len, mac) == 0);
        EB_CHECK_STR(mac, v1);
        free(msg);
        b = json_loadb(rec->body, rec->len, 0, NULL);
        EB_CHECK(!strncmp(nz(sget(b, "id")), "evt_", 4));
        EB_CHECK_STR(sget(b, "object"), "event");
        EB_CHECK_STR(sget(b, "version"), "V2");
        EB_CHECK(json_is_string(json_object_get(b, "created_at")) &&
                 json_is_string(json_object_get(b, "type")) &&
                 json_is_object(json_object_get(b, "data")) &&
                 !strncmp(nz(sget(b, "platform_id")), "pt_", 3));
        json_decref(b);
}

static void check_kommo_hook(struct hook_rec *rec)
{
        json_t *f = parse_form(rec->body);
        const char *k;
        json_t *v;
        int entity = 0;

        EB_CHECK(strstr(rec->ctype, "application/x-www-form-urlencoded"));
        EB_CHECK(strstr(rec->path, "token=kommo-hook-kommo-1"));
        EB_CHECK_STR(sget(f, "account[subdomain]"), "kommo-1");
        EB_CHECK(json_is_string(json_object_get(f, "account[id]")));
        json_object_foreach(f, k, v)
        {
                char ent[32], action[32];
                if (sscanf(k, "%31[a-z][%31[a-z]][0][id]", ent, action) == 2 &&
                    strstr(k, "[0][id]")) {
                        entity = 1;
                        EB_CHECK(!strcmp(ent, "leads") ||
                                 !strcmp(ent, "contacts") ||
                                 !strcmp(ent, "companies"));
                        EB_CHECK(strspn(json_string_value(v), "0123456789") ==
                                 strlen(json_string_value(v)));
                }
        }
        EB_CHECK(entity);
        if (strstr(rec->body, "leads%5Bstatus%5D"))
                EB_CHECK(json_object_get(f, "leads[status][0][status_id]") &&
                         json_object_get(f, "leads[status][0][pipeline_id]"));
        json_decref(f);
}

/*
 * A receiver that reads a webhook's body and dies before it answers (an
 * evbridge replica SIGKILLed after its commit) may have published that
 * version: the truth must count it as served, or a correct run fails its
 * "unserved" check. The receiver here never answers, and its listener is
 * closed once the body has arrived.
 */
static void test_webhook_read_unanswered(void)
{
        struct receiver rc;
        struct eb_sim sim;
        char url[128];
        const char *args[] = {"--strict",
                              "off",
                              "--accounts",
                              "close=1",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--consolidate",
                              "0",
                              "--webhook-url",
                              url,
                              "--webhook-dup",
                              "0",
                              "--webhook-jitter",
                              "0ms",
                              "--webhook-attempts",
                              "1",
                              "--webhook-timeout",
                              "30s",
                              NULL};
        json_t *truth, *t;
        size_t i, j, served = 0, n = 0;

        EB_REQUIRE(receiver_start(&rc) == 0);
        rc.never_answer = 1;
        snprintf(url, sizeof(url), "close=http://127.0.0.1:%d/hook/{account}",
                 rc.port);
        if (eb_sim_start(args, &sim) < 0) {
                receiver_free(&rc);
                EB_REQUIRE(0);
        }
        json_decref(generate(&sim, "close-1", 1));
        pump(&rc, 1, EB_T_TMOUT(20000));
        EB_REQUIRE(rc.n == 1);
        receiver_free(&rc); /* the connection closes, unanswered */
        for (i = 0; i < 100 && !served; i++) {
                struct timespec ts = {0, 100 * 1000 * 1000};

                nanosleep(&ts, NULL);
                truth = eb_sim_truth(&sim, "?account=close-1");
                n = json_array_size(truth);
                json_array_foreach(truth, j, t) served +=
                        json_is_true(json_object_get(t, "served"));
                json_decref(truth);
        }
        EB_CHECK_INT(n, 1);
        EB_CHECK_INT(served, 1);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

static void test_webhooks(void)
{
        struct receiver rc;
        struct eb_sim sim;
        char u1[128], u2[128], u3[128];
        const char *args[] = {"--strict",
                              "off",
                              "--accounts",
                              "kommo=1,close=1,kota=1",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--consolidate",
                              "0",
                              "--webhook-url",
                              u1,
                              "--webhook-url",
                              u2,
                              "--webhook-url",
                              u3,
                              "--webhook-dup",
                              "0",
                              "--webhook-jitter",
                              "20ms",
                              "--webhook-retry-base",
                              "50ms",
                              NULL};
        json_int_t want;
        size_t i, nk = 0, nc = 0, nt = 0, before;
        json_t *ids, *truth, *t;
        const char *id;
        int seen_first = 0, ok;

        EB_REQUIRE(receiver_start(&rc) == 0);
        snprintf(u1, sizeof(u1), "kommo=http://127.0.0.1:%d/hook/{account}",
                 rc.port);
        snprintf(u2, sizeof(u2), "close=http://127.0.0.1:%d/hook/{account}",
                 rc.port);
        snprintf(u3, sizeof(u3), "kota=http://127.0.0.1:%d/hook/{account}",
                 rc.port);
        if (eb_sim_start(args, &sim) < 0) {
                receiver_free(&rc);
                EB_REQUIRE(0);
        }
        json_decref(generate(&sim, "kommo-1", 30));
        json_decref(generate(&sim, "close-1", 5));
        json_decref(generate(&sim, "kota-1", 5));
        want = scheduled(&sim, "kommo-1") + scheduled(&sim, "close-1") +
               scheduled(&sim, "kota-1");
        EB_CHECK(scheduled(&sim, "kommo-1") > 0);
        EB_CHECK_INT(scheduled(&sim, "close-1"), 5);
        EB_CHECK_INT(scheduled(&sim, "kota-1"), 5);
        pump(&rc, (size_t)want, EB_T_TMOUT(20000));
        EB_CHECK_INT(rc.n, want);
        for (i = 0; i < rc.n; i++) {
                struct hook_rec *rec = &rc.recs[i];
                if (strstr(rec->path, "/hook/close-1")) {
                        nc++;
                        check_close_hook(&sim, rec);
                } else if (strstr(rec->path, "/hook/kota-1")) {
                        nt++;
                        check_kota_hook(&sim, rec);
                } else if (strstr(rec->path, "/hook/kommo-1")) {
                        nk++;
                        check_kommo_hook(rec);
                }
        }
        EB_CHECK_INT(nc, 5);
        EB_CHECK_INT(nt, 5);
        EB_CHECK_INT(nk, scheduled(&sim, "kommo-1"));
        /* a webhook delivery marks its version served */
        truth = eb_sim_truth(&sim, "?account=close-1");
        ok = 1;
        json_array_foreach(truth, i, t) ok &=
                json_is_true(json_object_get(t, "served"));
        EB_CHECK(ok);
        json_decref(truth);

        /* retry: the receiver fails the first attempt */
        before = rc.n;
        rc.fail_next = 1;
        ids = generate(&sim, "close-1", 1);
        EB_REQUIRE(ids && json_array_size(ids) == 1);
        id = json_string_value(json_array_get(ids, 0));
        pump(&rc, before + 2, EB_T_TMOUT(20000));
        EB_CHECK_INT(rc.n, before + 2);
        for (i = before; i < rc.n; i++) {
                json_t *b =
                        json_loadb(rc.recs[i].body, rc.recs[i].len, 0, NULL);
                EB_CHECK_STR(sget(json_object_get(b, "event"), "id"), id);
                if (i == before)
                        seen_first = rc.recs[i].answered == 500;
                else
                        EB_CHECK_INT(rc.recs[i].answered, 200);
                check_close_hook(&sim, &rc.recs[i]);
                json_decref(b);
        }
        EB_CHECK(seen_first);
        json_decref(ids);
        {
                json_t *stt = account_stats(&sim, "close-1");
                EB_CHECK(stat_int(stt, "webhooks", "retries") >= 1);
                EB_CHECK_INT(stat_int(stt, "webhooks", "delivered"), 6);
                json_decref(stt);
        }

        /* duplicates: every delivery twice */
        EB_CHECK(set(&sim, "kota-1", "{\"webhook_dup\":1}") == 0);
        before = rc.n;
        ids = generate(&sim, "kota-1", 2);
        pump(&rc, before + 4, EB_T_TMOUT(20000));
        EB_CHECK_INT(rc.n, before + 4);
        for (i = 0; i < json_array_size(ids); i++) {
                size_t j, cnt = 0;
                for (j = before; j < rc.n; j++)
                        cnt += strstr(rc.recs[j].body,
                                      json_string_value(
                                              json_array_get(ids, i))) != NULL;
                EB_CHECK_INT(cnt, 2);
        }
        json_decref(ids);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        receiver_free(&rc);
}

/* ---- determinism, CLI and config --------------------------------------------
 */

static json_t *signature(const struct eb_sim *sim)
{
        json_t *sig = json_array(), *p, *e;
        long st;
        size_t i;

        p = get_json(sim, "kommo-1", "/api/v4/events?limit=250", &st);
        json_array_foreach(
                json_object_get(json_object_get(p, "_embedded"), "events"), i,
                e)
        {
                json_array_append_new(
                        sig, json_pack("[s,I]", sget(e, "type"),
                                       json_integer_value(json_object_get(
                                               e, "entity_id"))));
        }
        json_decref(p);
        p = close_page(sim, "close-1", "", &st);
        json_array_foreach(json_object_get(p, "data"), i, e)
                json_array_append_new(sig, json_string(sget(e, "id")));
        json_decref(p);
        p = get_json(sim, "kota-1", "/events?page_size=100", &st);
        json_array_foreach(json_object_get(p, "items"), i, e)
        {
                json_array_append_new(sig, json_string(sget(e, "id")));
                json_array_append_new(sig, json_string(sget(e, "type")));
        }
        json_decref(p);
        return sig;
}

static void test_determinism(void)
{
        const char *a42[] = {
                "--strict", "off", "--accounts", "kommo=1,close=1,kota=1",
                "--seed",   "42",  "--rate",     "0",
                "--limits", "off", "--backlog",  "40",
                NULL};
        const char *a43[] = {
                "--strict", "off", "--accounts", "kommo=1,close=1,kota=1",
                "--seed",   "43",  "--rate",     "0",
                "--limits", "off", "--backlog",  "40",
                NULL};
        struct eb_sim sim;
        json_t *s1, *s2, *s3;

        EB_REQUIRE(eb_sim_start(a42, &sim) == 0);
        s1 = signature(&sim);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        EB_REQUIRE(eb_sim_start(a42, &sim) == 0);
        s2 = signature(&sim);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        EB_REQUIRE(eb_sim_start(a43, &sim) == 0);
        s3 = signature(&sim);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        EB_CHECK(json_array_size(s1) > 100);
        EB_CHECK(json_equal(s1, s2));
        EB_CHECK(!json_equal(s1, s3));
        json_decref(s1);
        json_decref(s2);
        json_decref(s3);
}

static int run_capture(const char *const argv[], char *out, size_t outsz)
{
        char cmd[2048];
        size_t n = 0, len = 0;
        FILE *fp;
        int i, status;

        cmd[0] = '\0';
        for (i = 0; argv[i] && len < sizeof(cmd); i++)
                len += (size_t)snprintf(cmd + len, sizeof(cmd) - len, "'%s' ",
                                        argv[i]);
        if (len < sizeof(cmd))
                snprintf(cmd + len, sizeof(cmd) - len, "2>&1");
        fp = popen(cmd, "r");
        if (!fp)
                return -1;
        n = fread(out, 1, outsz - 1, fp);
        out[n] = '\0';
        status = pclose(fp);
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

static void test_cli_and_config(void)
{
        static char out[65536];
        char bin[512], cfg[] = "/tmp/eb_sim_cfg_XXXXXX";
        const char *dir = getenv("EB_BUILD_DIR");
        const char *help[] = {bin, "--help", NULL};
        const char *bad[] = {bin, "--no-such-option", NULL};
        const char *badval[] = {bin, "--kommo-rps", "zero", NULL};
        const char *badtarget[] = {bin,      "--accounts", "close=1",
                                   "--rate", "close-7=3",  NULL};
        const char *opts[] = {"--listen",       "--port-file",
                              "--seed",         "--accounts",
                              "--rate",         "--backlog",
                              "--backlog-span", "--limits",
                              "--kommo-rps",    "--kommo-ban-after",
                              "--close-limit",  "--close-window",
                              "--kota-rps",     "--faults",
                              "--slow-ms",      "--consolidate",
                              "--webhook-url",  "--webhook-share",
                              "--webhook-dup",  "--dump",
                              "--config",       "--verbose",
                              "--down",         "--latency-ms",
                              "--kota-version", NULL};
        const char *args[] = {"--config", cfg, "--rate", "close-2=0", NULL};
        struct eb_sim sim;
        json_t *ctl, *c1, *c2;
        FILE *fp;
        int fd, i;

        snprintf(bin, sizeof(bin), "%s/bin/evbridge-sim",
                 dir && *dir ? dir : "build/release");
        EB_CHECK_INT(run_capture(help, out, sizeof(out)), 0);
        for (i = 0; opts[i]; i++) {
                if (!strstr(out, opts[i]))
                        fprintf(stderr, "  --help lacks %s\n", opts[i]);
                EB_CHECK(strstr(out, opts[i]) != NULL);
        }
        EB_CHECK_INT(run_capture(bad, out, sizeof(out)), 2);
        EB_CHECK_INT(run_capture(badval, out, sizeof(out)), 2);
        EB_CHECK(strstr(out, "kommo_rps"));
        EB_CHECK_INT(run_capture(badtarget, out, sizeof(out)), 2);
        EB_CHECK(strstr(out, "close-7"));

        fd = mkstemp(cfg);
        EB_REQUIRE(fd >= 0);
        fp = fdopen(fd, "w");
        fputs("{\"accounts\": {\"close\": 2}, \"seed\": 7, \"rate\": 0,\n"
              " \"close\": {\"close_limit\": 9},\n"
              " \"overrides\": {\"close-1\": {\"close-limit\": 3,"
              " \"rate\": 5}}}\n",
              fp);
        fclose(fp);
        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        EB_CHECK_INT(json_array_size(json_object_get(sim.info, "accounts")), 2);
        EB_CHECK_INT(json_integer_value(json_object_get(sim.info, "seed")), 7);
        ctl = eb_sim_get_json(&sim, "/_sim/control");
        c1 = json_object_get(json_object_get(ctl, "accounts"), "close-1");
        c2 = json_object_get(json_object_get(ctl, "accounts"), "close-2");
        EB_CHECK_INT(json_integer_value(json_object_get(c1, "close_limit")), 3);
        EB_CHECK_INT(json_integer_value(json_object_get(c2, "close_limit")), 9);
        EB_CHECK(json_real_value(json_object_get(c1, "rate")) == 5.0);
        EB_CHECK(json_real_value(json_object_get(c2, "rate")) == 0.0);
        /* secrets are never echoed */
        {
                char *dumped = json_dumps(ctl, 0);
                EB_CHECK(dumped && !strstr(dumped, "close-key"));
                free(dumped);
        }
        json_decref(ctl);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
        unlink(cfg);
        /* a bad config key is an error naming it */
        fd = open(cfg, O_CREAT | O_WRONLY | O_TRUNC, 0600);
        EB_REQUIRE(fd >= 0);
        EB_CHECK(write(fd, "{\"ratez\": 1}", 12) == 12);
        close(fd);
        {
                const char *bc[] = {bin, "--config", cfg, NULL};
                EB_CHECK_INT(run_capture(bc, out, sizeof(out)), 2);
                EB_CHECK(strstr(out, "ratez"));
        }
        unlink(cfg);
}

/* live arrivals at a configured rate */
static void test_live_rate(void)
{
        const char *args[] = {
                "--strict", "off", "--accounts", "kommo=0,close=1,kota=1",
                "--rate",   "50",  "--limits",   "off",
                NULL};
        struct eb_sim sim;
        json_t *a, *b;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        a = account_stats(&sim, "kota-1");
        usleep(500 * 1000);
        b = account_stats(&sim, "kota-1");
        EB_CHECK(stat_int(b, "events", NULL) > stat_int(a, "events", NULL));
        json_decref(a);
        json_decref(b);
        EB_CHECK(set(&sim, "all", "{\"rate\":0}") == 0);
        a = account_stats(&sim, "close-1");
        usleep(200 * 1000);
        b = account_stats(&sim, "close-1");
        EB_CHECK_INT(stat_int(b, "events", NULL), stat_int(a, "events", NULL));
        json_decref(a);
        json_decref(b);
        EB_CHECK_INT(eb_sim_stop(&sim), 0);
}

/* ---- strict mode (docs/simulator.md "Strict mode") --------------------- */

static size_t kommo_count(const struct eb_sim *sim, const char *acct,
                          const char *query, long *status)
{
        char path[512];
        json_t *root;
        size_t n;

        snprintf(path, sizeof(path), "/api/v4/events?limit=250%s", query);
        root = get_json(sim, acct, path, status);
        n = json_array_size(
                json_object_get(json_object_get(root, "_embedded"), "events"));
        json_decref(root);
        return n;
}

static void test_strict_kommo(void)
{
        const char *args[] = {"--accounts",
                              "kommo=2,close=0,kota=0",
                              "--rate",
                              "0",
                              "--late-visibility",
                              "0",
                              "--kommo-rps",
                              "2",
                              "--kommo-ban-after",
                              "3",
                              NULL};
        struct eb_sim sim;
        struct eb_sim_resp r;
        json_t *ids, *a1, *a2, *body;
        const json_t *e1, *e2;
        long st;
        size_t i, diff = 0;
        int banned = 0;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        ids = generate(&sim, "kommo-1", 40);
        json_decref(ids);
        /* filters: the comma form only (the array form is a 400) */
        EB_CHECK(kommo_count(&sim, "kommo-1",
                             "&filter%5Bentity%5D=lead,contact,company,task",
                             &st) == 40);
        EB_CHECK_INT(st, 200);
        usleep(1100 * 1000);
        kommo_count(&sim, "kommo-1", "&filter%5Bentity%5D%5B%5D=lead", &st);
        EB_CHECK_INT(st, 400);
        kommo_count(&sim, "kommo-1", "&filter%5Btype%5D%5B0%5D=lead_added",
                    &st);
        EB_CHECK_INT(st, 400);
        usleep(1100 * 1000);
        /* same-second ties: a new order on every request (40 events made
         * at once share one or two seconds) */
        a1 = get_json(&sim, "kommo-1", "/api/v4/events?limit=250", &st);
        a2 = get_json(&sim, "kommo-1", "/api/v4/events?limit=250", &st);
        e1 = json_object_get(json_object_get(a1, "_embedded"), "events");
        e2 = json_object_get(json_object_get(a2, "_embedded"), "events");
        EB_CHECK_INT((long)json_array_size(e1), 40);
        EB_CHECK_INT((long)json_array_size(e2), 40);
        for (i = 0; i < 40; i++) {
                const char *x = sget(json_array_get(e1, i), "id");
                const char *y = sget(json_array_get(e2, i), "id");
                if (!x || !y || strcmp(x, y))
                        diff++;
        }
        EB_CHECK(diff > 0);
        json_decref(a1);
        json_decref(a2);
        /* the ban is per client address: kommo-2 is blocked too, with a
         * long retry_after */
        for (i = 0; i < 40 && !banned; i++) {
                get_raw(&sim, "kommo-1", "/api/v4/events", tmo(), &r);
                banned = r.status == 403;
                eb_sim_resp_free(&r);
        }
        EB_CHECK(banned);
        get_raw(&sim, "kommo-2", "/api/v4/events", tmo(), &r);
        EB_CHECK_INT(r.status, 403);
        body = json_loadb(r.body, r.len, 0, NULL);
        EB_CHECK(json_integer_value(json_object_get(body, "retry_after")) >
                 600);
        json_decref(body);
        eb_sim_resp_free(&r);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

static void test_strict_late(void)
{
        const char *args[] = {"--accounts",
                              "kommo=1,close=1,kota=1",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--late-visibility",
                              "3s",
                              "--consolidate",
                              "0",
                              NULL};
        const char *acct[] = {"kommo-1", "close-1", "kota-1"};
        const char *path[] = {"/api/v4/events?limit=250",
                              "/api/v1/event/?_limit=50",
                              "/events?page_size=100"};
        const char *arr[] = {"_embedded", "data", "items"};
        struct eb_sim sim;
        size_t before[3], after[3];
        long st;
        int k;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        for (k = 0; k < 3; k++)
                json_decref(generate(&sim, acct[k], 30));
        for (k = 0; k < 3; k++) {
                int64_t t0 = eb_now_ms(), t1;
                json_t *root = get_json(&sim, acct[k], path[k], &st);
                const json_t *a = json_object_get(root, arr[k]);
                json_t *truth, *t;
                size_t i, lo = 0, hi = 0, later = 0;
                char q[64];

                t1 = eb_now_ms();
                if (k == 0)
                        a = json_object_get(a, "events");
                before[k] = json_array_size(a);
                json_decref(root);
                /* visible_ms: when the list API starts to show a version,
                 * within late_visibility of its own time, and what the
                 * page just read showed agrees with it */
                snprintf(q, sizeof(q), "?account=%s", acct[k]);
                truth = eb_sim_truth(&sim, q);
                EB_CHECK_INT((long)json_array_size(truth), 30);
                json_array_foreach(truth, i, t)
                {
                        json_int_t u = json_integer_value(
                                json_object_get(t, "updated_ms"));
                        json_int_t v = json_integer_value(
                                json_object_get(t, "visible_ms"));

                        EB_CHECK(v >= u && v <= u + 3000);
                        later += v > u;
                        lo += v <= t0;
                        hi += v <= t1;
                }
                EB_CHECK(later > 0);
                EB_CHECK(lo <= before[k] && before[k] <= hi);
                json_decref(truth);
        }
        usleep(3300 * 1000);
        for (k = 0; k < 3; k++) {
                json_t *root = get_json(&sim, acct[k], path[k], &st);
                const json_t *a = json_object_get(root, arr[k]);
                if (k == 0)
                        a = json_object_get(a, "events");
                after[k] = json_array_size(a);
                json_decref(root);
                /* some of the 30 were not visible at once, all are now */
                EB_CHECK(before[k] < 30);
                EB_CHECK_INT((long)after[k], 30);
        }
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

/* Events of a Close page with data or previous_data. */
static size_t with_data(const json_t *page)
{
        const json_t *e;
        size_t i, n = 0;

        json_array_foreach(json_object_get(page, "data"), i, e) n +=
                !json_is_null(json_object_get(e, "data")) ||
                !json_is_null(json_object_get(e, "previous_data"));
        return n;
}

static void test_strict_close(void)
{
        const char *args[] = {"--accounts",
                              "kommo=0,close=2,kota=1",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--late-visibility",
                              "0",
                              "--close-cursor-ttl",
                              "1s",
                              "--close-strip-after",
                              "1s",
                              "--close-admin",
                              "close-2=on",
                              "--consolidate",
                              "0",
                              NULL};
        struct eb_sim sim;
        json_t *p1, *p2, *stt, *cfg;
        char path[1024];
        long st;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        json_decref(generate(&sim, "close-1", 60));
        json_decref(generate(&sim, "close-2", 5));
        p1 = get_json(&sim, "close-1", "/api/v1/event/?_limit=10", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK(with_data(p1) > 0);
        snprintf(path, sizeof(path), "/api/v1/event/?_limit=10&_cursor=%s",
                 nz(sget(p1, "cursor_next")));
        p2 = get_json(&sim, "close-1", path, &st);
        EB_CHECK_INT(st, 200); /* a fresh cursor works */
        json_decref(p2);
        usleep(1300 * 1000);
        /* an old cursor is refused; events older than the strip age come
         * without data for a non-admin key, with it for an admin's */
        p2 = get_json(&sim, "close-1", path, &st);
        EB_CHECK_INT(st, 400);
        json_decref(p2);
        json_decref(p1);
        p1 = get_json(&sim, "close-1", "/api/v1/event/?_limit=10", &st);
        EB_CHECK_INT(st, 200);
        EB_CHECK_INT((long)json_array_size(json_object_get(p1, "data")), 10);
        EB_CHECK_INT((long)with_data(p1), 0);
        json_decref(p1);
        p1 = get_json(&sim, "close-2", "/api/v1/event/?_limit=10", &st);
        EB_CHECK(with_data(p1) > 0);
        json_decref(p1);
        stt = account_stats(&sim, "close-1");
        EB_CHECK(json_integer_value(json_object_get(stt, "stripped")) >= 10);
        json_decref(stt);
        /* Kota sends a webhook once: no retries by default */
        cfg = eb_sim_get_json(&sim, "/_sim/control");
        EB_CHECK_INT(json_integer_value(json_object_get(
                             json_object_get(json_object_get(cfg, "accounts"),
                                             "kota-1"),
                             "webhook_attempts")),
                     1);
        json_decref(cfg);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

/* POST the token renewal of kommo-1 with @p refresh; @returns the status,
 * and the new pair (owned) when it is 200. */
static long oauth_refresh(const struct eb_sim *sim, const json_t *oauth,
                          const char *refresh, char **access_out,
                          char **refresh_out)
{
        struct eb_sim_resp r;
        json_t *req, *body;
        char url[512], *text;
        long st;

        eb_sim_url(sim, "kommo-1", "/oauth2/access_token", url, sizeof(url));
        req = json_pack("{s:s,s:s,s:s,s:s,s:s}", "client_id",
                        sget(oauth, "client_id"), "client_secret",
                        sget(oauth, "client_secret"), "grant_type",
                        "refresh_token", "refresh_token", refresh,
                        "redirect_uri", sget(oauth, "redirect_uri"));
        text = json_dumps(req, JSON_COMPACT);
        json_decref(req);
        eb_sim_request("POST", url, NULL, text, tmo(), &r);
        free(text);
        st = r.status;
        if (st == 200 && access_out && refresh_out) {
                body = json_loadb(r.body, r.len, 0, NULL);
                EB_CHECK_STR(sget(body, "token_type"), "Bearer");
                EB_CHECK_INT((long)json_integer_value(
                                     json_object_get(body, "expires_in")),
                             1);
                EB_CHECK(json_integer_value(
                                 json_object_get(body, "server_time")) > 0);
                *access_out = strdup(nz(sget(body, "access_token")));
                *refresh_out = strdup(nz(sget(body, "refresh_token")));
                json_decref(body);
        }
        eb_sim_resp_free(&r);
        return st;
}

static long kommo_get_with(const struct eb_sim *sim, const char *token)
{
        struct eb_sim_resp r;
        char url[512], auth[512];
        long st;

        eb_sim_url(sim, "kommo-1", "/api/v4/events", url, sizeof(url));
        snprintf(auth, sizeof(auth), "Bearer %s", token);
        eb_sim_get(url, auth, tmo(), &r);
        st = r.status;
        eb_sim_resp_free(&r);
        return st;
}

/* Kommo OAuth: access tokens expire, refresh tokens rotate (the old one is
 * refused once used). */
static void test_strict_kommo_oauth(void)
{
        const char *args[] = {"--accounts",
                              "kommo=1,close=0,kota=0",
                              "--rate",
                              "0",
                              "--limits",
                              "off",
                              "--kommo-token-ttl",
                              "1s",
                              NULL};
        struct eb_sim sim;
        const json_t *oauth;
        char *a1 = NULL, *r1 = NULL, *a2 = NULL, *r2 = NULL;
        char *first;
        json_t *stt;

        EB_REQUIRE(eb_sim_start(args, &sim) == 0);
        oauth = json_object_get(eb_sim_account(&sim, "kommo-1"), "oauth");
        EB_REQUIRE(json_is_object(oauth));
        first = strdup(nz(sget(oauth, "refresh_token")));
        EB_CHECK_INT(oauth_refresh(&sim, oauth, first, &a1, &r1), 200);
        EB_REQUIRE(a1 && r1);
        EB_CHECK(strcmp(r1, first) != 0);
        EB_CHECK_INT(kommo_get_with(&sim, a1), 204); /* works: no events */
        /* the spent refresh token is refused; the new one works once */
        EB_CHECK_INT(oauth_refresh(&sim, oauth, first, NULL, NULL), 400);
        EB_CHECK_INT(oauth_refresh(&sim, oauth, r1, &a2, &r2), 200);
        EB_CHECK_INT(oauth_refresh(&sim, oauth, r1, NULL, NULL), 400);
        EB_CHECK(a2 && strcmp(a2, a1) != 0);
        /* access tokens expire; the long-lived token keeps working */
        usleep(1200 * 1000);
        EB_CHECK_INT(kommo_get_with(&sim, a1), 401);
        EB_CHECK_INT(kommo_get_with(&sim, a2), 401);
        EB_CHECK_INT(kommo_get_with(&sim, "kommo-token-kommo-1"), 204);
        stt = account_stats(&sim, "kommo-1");
        EB_CHECK_INT((long)json_integer_value(json_object_get(
                             json_object_get(stt, "oauth"), "refreshes")),
                     2);
        EB_CHECK_INT((long)json_integer_value(json_object_get(
                             json_object_get(stt, "oauth"), "refused")),
                     2);
        json_decref(stt);
        free(first);
        free(a1);
        free(r1);
        free(a2);
        free(r2);
        EB_CHECK(eb_sim_stop(&sim) == 0);
}

int main(void)
{
        EB_RUN(test_startup_line);
        EB_RUN(test_kommo_pagination);
        EB_RUN(test_kommo_closed_window);
        EB_RUN(test_close_pagination);
        EB_RUN(test_close_consolidation);
        EB_RUN(test_kota_pagination);
        EB_RUN(test_kota_retention);
        EB_RUN(test_auth);
        EB_RUN(test_rate_limits);
        EB_RUN(test_faults);
        EB_RUN(test_concurrency_stats);
        EB_RUN(test_truth);
        EB_RUN(test_webhooks);
        EB_RUN(test_webhook_read_unanswered);
        EB_RUN(test_determinism);
        EB_RUN(test_cli_and_config);
        EB_RUN(test_live_rate);
        EB_RUN(test_strict_kommo);
        EB_RUN(test_strict_late);
        EB_RUN(test_strict_close);
        EB_RUN(test_strict_kommo_oauth);
        return eb_test_summary();
}
