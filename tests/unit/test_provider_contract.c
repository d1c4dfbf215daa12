/*
 * The provider contract (eb_provider.h), checked over every registered
 * provider: the built-in ones of lib/providers/list.h and the test-only
 * ones below, registered with eb_provider_register(). What only one
 * provider does (its URLs, checkpoints, statuses, options) is tested in
 * its own test_provider_<name>.c.
 *
 * A provider brings its fixtures here, one row of fixtures[]: a first
 * page that says there is more, a last page, and the bodies the garbage
 * test mutates. A provider without a row fails the test.
 */
#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_config.h"
#include "eb_log.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_webhook_sig.h"
#include "provider_test.h"

/* Test-only providers, one line each: X(name) is the struct eb_provider
 * eb_provider_<name> of tests/unit/provider_<name>.c. */
#define T_TEST_PROVIDERS(X) X(example)

#define T_DECLARE(x) extern const struct eb_provider eb_provider_##x;
T_TEST_PROVIDERS(T_DECLARE)

struct t_fx {
        const char *provider;
        const char *base_url; /* NULL: the provider's default */
        const char *options;  /* of the garbage test's source (NULL: none) */
        const char *ct;       /* the content type of its pages */
        const char *first;    /* a first page with events and more */
        const char *last;     /* a last page with events, fed after first */
        const char *garbage[4];
        long min_fed; /* garbage bodies fed at the least */
        /* checkpoints its walk_begin refuses (NULL-terminated) */
        const char *const *bad_cps;
        /* native events its normalize refuses, with the exact reason
         * (ended by a NULL json) */
        const struct t_reject *rejects;
};

static const char *const kommo_bad_cps[] = {
        "[]",
        "{}",
        "{\"wm\":\"2024-01-01T00:00:00.000Z\"}",
        "{\"wm\":-5}",
        "{\"wm\":1699990000,\"from\":1699989880}",
        "{\"wm\":1699990000,\"from\":1699989880,\"to\":1699995000,"
        "\"page\":0}",
        "{\"wm\":1699990000,\"from\":1699995000,\"to\":1699989880,"
        "\"page\":2}",
        "{\"wm\":1699990000,\"from\":\"x\",\"to\":1699995000,"
        "\"page\":2}",
        NULL};

static const struct t_reject kommo_rejects[] = {
        {"{\"type\":\"lead_added\",\"entity_type\":\"lead\","
         "\"created_at\":1}",
         "event (no id): missing or invalid \"id\""},
        {"{\"id\":\"\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":1}",
         "event (no id): missing or invalid \"id\""},
        {"{\"id\":\"e1\",\"entity_type\":\"lead\",\"created_at\":1}",
         "event e1: missing or invalid \"type\""},
        {"{\"id\":\"e1\",\"type\":7,\"entity_type\":\"lead\","
         "\"created_at\":1}",
         "event e1: missing or invalid \"type\""},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"created_at\":1}",
         "event e1: missing or invalid \"entity_type\""},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\"}",
         "event e1: missing or invalid \"created_at\" (unix "
         "seconds)"},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":\"1665064411\"}",
         "event e1: missing or invalid \"created_at\" (unix "
         "seconds)"},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":-1}",
         "event e1: missing or invalid \"created_at\" (unix "
         "seconds)"},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":1,\"entity_id\":{}}",
         "event e1: invalid \"entity_id\""},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":1,\"created_by\":[1]}",
         "event e1: invalid \"created_by\""},
        {"{\"id\":\"e1\",\"type\":\"lead_added\",\"entity_type\":"
         "\"lead\",\"created_at\":1,\"account_id\":true}",
         "event e1: invalid \"account_id\""},
        {NULL, NULL}};

static const char *const close_bad_cps[] = {
        "{}",
        "{\"wm\":1699999995}",
        "{\"wm\":\"yesterday\"}",
        "{\"wm\":\"2023-11-14T21:00:00.000Z\",\"cursor\":5}",
        "{\"wm\":\"2023-11-14T21:00:00.000Z\",\"cursor\":\"c\"}",
        "{\"wm\":\"2023-11-14T21:00:00.000Z\",\"cursor\":\"c\","
        "\"gte\":\"2023-11-14T20:55:00.000Z\",\"started\":\"x\"}",
        "{\"wm\":\"2023-11-14T21:00:00.000Z\",\"cursor\":\"c\","
        "\"gte\":\"2023-11-14T20:55:00.000Z\",\"started\":"
        "\"2023-11-14T21:10:00.000Z\",\"max\":17}",
        NULL};

static const struct t_reject close_rejects[] = {
        {"{\"object_type\":\"lead\",\"action\":\"created\","
         "\"date_updated\":\"2023-11-14T22:00:00\"}",
         "event (no id): missing or invalid \"id\""},
        {"{\"id\":\"ev_1\",\"action\":\"created\","
         "\"date_updated\":\"2023-11-14T22:00:00\"}",
         "event ev_1: missing or invalid \"object_type\""},
        {"{\"id\":\"ev_1\",\"object_type\":\"lead\","
         "\"date_updated\":\"2023-11-14T22:00:00\"}",
         "event ev_1: missing or invalid \"action\""},
        {"{\"id\":\"ev_1\",\"object_type\":\"lead\",\"action\":"
         "\"created\",\"date_updated\":\"2023-11-14T22:00:00\","
         "\"user_id\":{}}",
         "event ev_1: invalid \"user_id\""},
        {"{\"id\":\"ev_1\",\"object_type\":\"lead\",\"action\":"
         "\"created\",\"date_updated\":\"2023-11-14T22:00:00\","
         "\"object_id\":[]}",
         "event ev_1: invalid \"object_id\""},
        {"{\"id\":\"ev_1\",\"object_type\":\"lead\",\"action\":"
         "\"created\",\"date_updated\":\"2023-11-14T22:00:00\","
         "\"organization_id\":false}",
         "event ev_1: invalid \"organization_id\""},
        {"{\"event\":5}", "event (no id): missing or invalid \"id\""},
        {NULL, NULL}};

static const char *const kota_bad_cps[] = {
        "{}",
        "[]",
        "{\"wm\":1699999995}",
        "{\"wm\":\"2023-11-14T11:00:00.500Z\",\"page\":2}",
        "{\"wm\":\"2023-11-14T11:00:00.500Z\",\"page\":0,"
        "\"created_after\":\"2023-11-13T22:13:20.000Z\"}",
        "{\"wm\":\"2023-11-14T11:00:00.500Z\",\"page\":\"2\","
        "\"created_after\":\"2023-11-13T22:13:20.000Z\"}",
        "{\"wm\":\"2023-11-14T11:00:00.500Z\",\"created_after\":"
        "\"2023-11-13T22:13:20.000Z\"}",
        NULL};

static const struct t_reject kota_rejects[] = {
        {"{\"type\":\"employee.created\",\"created\":"
         "\"2023-11-14T10:00:00Z\"}",
         "event (no id): missing or invalid \"id\""},
        {"{\"id\":\"evt_1\",\"created\":\"2023-11-14T10:00:00Z\"}",
         "event evt_1: missing or invalid \"type\""},
        {"{\"id\":\"evt_1\",\"type\":\"employee.created\"}",
         "event evt_1: missing or invalid \"created\" / "
         "\"created_at\""},
        {"{\"id\":\"evt_1\",\"type\":\"employee.created\","
         "\"created\":\"last tuesday\"}",
         "event evt_1: missing or invalid \"created\" / "
         "\"created_at\""},
        {"{\"id\":\"evt_1\",\"type\":\"employee.created\","
         "\"created\":\"2023-11-14T10:00:00Z\",\"data\":\"x\"}",
         "event evt_1: \"data\" is not an object"},
        {"{\"id\":\"evt_1\",\"type\":\"employee.created\","
         "\"created\":\"2023-11-14T10:00:00Z\",\"platform_id\":{}}",
         "event evt_1: invalid \"platform_id\""},
        {NULL, NULL}};

static const struct t_fx fixtures[] = {
        {"kommo",
         "https://acme.kommo.com",
         NULL,
         "application/hal+json",
         "providers/kommo/list_page1.json",
         /* Kommo reads the oldest second of a page again, whole: the
          * request after page 1 is page 1 of a narrower window */
         "providers/kommo/list_last_page1.json",
         {"providers/kommo/list_page1.json",
          "providers/kommo/list_page2_last.json",
          "providers/kommo/error_429.json"},
         2500,
         kommo_bad_cps,
         kommo_rejects},
        {"close",
         NULL,
         NULL,
         "application/json",
         "providers/close/page1.json",
         "providers/close/page2_last.json",
         {"providers/close/page1.json", "providers/close/page2_last.json",
          "providers/close/webhook_example4.json"},
         3500,
         close_bad_cps,
         close_rejects},
        {"kota",
         NULL,
         "{\"types\":[\"employee.created\"]}",
         "application/json",
         "providers/kota/v1_page1.json",
         /* Kota reads the newest second of a page again, whole: the
          * request after page 1 is page 1 from that second */
         "providers/kota/v2_last_page1.json",
         {"providers/kota/v1_page1.json", "providers/kota/v2_page2.json"},
         1500,
         kota_bad_cps,
         kota_rejects},
        {"example",
         NULL,
         NULL,
         "application/json",
         "providers/example/page1.json",
         "providers/example/page2_last.json",
         {"providers/example/page1.json", "providers/example/page2_last.json"},
         500,
         NULL,
         NULL},
};

static const struct t_fx *fx_of(const struct eb_provider *prov)
{
        size_t i;

        for (i = 0; i < sizeof(fixtures) / sizeof(fixtures[0]); i++)
                if (!strcmp(fixtures[i].provider, prov->name))
                        return &fixtures[i];
        fprintf(stderr, "  provider %s has no row in fixtures[]\n", prov->name);
        return NULL;
}

/* A source of @p prov with its credential set (and the fixture row's
 * options when @p opts). */
static void src_opts(struct eb_source_cfg *s, const struct eb_provider *prov,
                     const struct t_fx *fx, int opts)
{
        t_src_init(s, prov->name, fx ? fx->base_url : NULL,
                   fx && opts ? fx->options : NULL);
        if (!s->token)
                s->token = t_strdup("t0k3n-abcdef");
        if (!s->api_key)
                s->api_key = t_strdup("api_3x4mpl3K3y");
}

#define src_init(s, prov, fx) src_opts((s), (prov), (fx), 0)

static void begin(struct eb_walk *w, const struct eb_provider *prov,
                  const struct eb_source_cfg *s, json_t *cp)
{
        eb_walk_init(w, prov, s, cp, T_NOW_MS);
        w->start_ms = T_NOW_MS - 24 * 3600 * 1000LL;
}

#define FOREACH_PROVIDER(p)                                                    \
        for (const struct eb_provider *const *p = eb_provider_all(); *p; p++)

/* ---- the declarations ------------------------------------------------ */

static void test_declarations(void)
{
        size_t n = 0;

        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                const struct eb_provider *const *q;

                n++;
                EB_REQUIRE(p->name && *p->name);
                EB_CHECK(eb_provider_lookup(p->name) == p);
                for (q = pp + 1; *q; q++)
                        EB_CHECK(strcmp((*q)->name, p->name) != 0);
                EB_CHECK(p->check_config && p->walk_begin && p->next_request &&
                         p->handle_response && p->page_done && p->walk_end &&
                         p->normalize);
                EB_CHECK(p->credential && (!strcmp(p->credential, "token") ||
                                           !strcmp(p->credential, "api_key")));
                EB_CHECK(p->default_rps > 0 && p->default_burst >= 1);
                EB_CHECK(p->default_page_size >= 1 &&
                         p->default_page_size <= p->max_page_size);
                EB_CHECK(p->default_overlap_ms >= 0 && p->default_lag_ms >= 0);
                if (p->webhook) {
                        const struct eb_wh_scheme *sc = p->webhook->scheme;

                        EB_REQUIRE(sc && sc->name && sc->verify &&
                                   sc->key_init);
                        /* webhook.scheme finds it by its name */
                        EB_CHECK(eb_wh_scheme_lookup(sc->name) == sc);
                        EB_CHECK(strstr(eb_wh_scheme_names(), sc->name) !=
                                 NULL);
                        EB_CHECK(p->webhook->content_type != NULL);
                        /* a trigger carries no event to pick out */
                        EB_CHECK(!p->webhook->trigger_check ||
                                 !p->webhook->event_key);
                }
        }
        EB_CHECK_INT(n, 3 + 1); /* built-in + test-only */
        EB_CHECK_INT(eb_provider_register(&eb_provider_example), -EEXIST);
        EB_CHECK(eb_provider_lookup("nope") == NULL);
        EB_CHECK(eb_provider_lookup(NULL) == NULL);
}

/* ---- config checks every provider shares ----------------------------- */

/* eb_provider_check_config on @p src as sources[0]. */
static int check_cfg(struct eb_source_cfg *src, char *err, size_t errsz)
{
        struct eb_config cfg;

        memset(&cfg, 0, sizeof(cfg));
        cfg.sources = src;
        cfg.sources_cnt = 1;
        err[0] = '\0';
        return eb_provider_check_config(&cfg, err, errsz);
}

static void test_config(void)
{
        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                const struct t_fx *fx = fx_of(p);
                struct eb_source_cfg s;
                char err[512], want[512];
                char **cred;

                EB_REQUIRE(fx);
                src_init(&s, p, fx);
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), 0);
                /* the credential it names is required */
                cred = !strcmp(p->credential, "token") ? &s.token : &s.api_key;
                free(*cred);
                *cred = NULL;
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
                snprintf(want, sizeof(want),
                         "sources[0].credentials.%s: required for provider %s",
                         p->credential, p->name);
                EB_CHECK_STR(err, want);
                *cred = t_strdup("");
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
                EB_CHECK_STR(err, want);
                t_src_fini(&s);

                /* its page size bound */
                src_init(&s, p, fx);
                s.page_size = p->max_page_size + 1;
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
                snprintf(want, sizeof(want),
                         "sources[0].poll.page_size: %d is above the maximum "
                         "for provider %s (1..%d)",
                         p->max_page_size + 1, p->name, p->max_page_size);
                EB_CHECK_STR(err, want);
                s.page_size = p->max_page_size;
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), 0);
                t_src_fini(&s);

                /* no base_url and no default */
                src_init(&s, p, fx);
                free(s.base_url);
                s.base_url = NULL;
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)),
                             p->default_base_url ? 0 : -EINVAL);
                t_src_fini(&s);

                /* options that are not an object */
                src_init(&s, p, fx);
                json_object_set_new(s.json, "options", json_integer(5));
                EB_CHECK_INT(check_cfg(&s, err, sizeof(err)), -EINVAL);
                EB_CHECK_STR(err, "sources[0].options: expected an object");
                t_src_fini(&s);
        }
}

/* ---- the walk ----------------------------------------------------------- */

/* Every event of an OK page is complete and names its provider. */
static void check_events(const struct eb_provider *p,
                         const struct eb_page *page)
{
        size_t i;

        for (i = 0; i < page->events_cnt; i++) {
                const struct eb_event *e = page->events[i];

                EB_CHECK_STR(e->provider, p->name);
                EB_CHECK_STR(e->source_name, "acme");
                EB_CHECK(e->id && *e->id && e->native);
                if (e->deadletter)
                        continue;
                EB_CHECK(e->entity_type && *e->entity_type && e->entity_id &&
                         e->action && *e->action && e->fields &&
                         e->time_ms > 0);
        }
}

/* Feed @p name to @p w; @returns the page's "more". */
static int feed_ok(const struct eb_provider *p, struct eb_walk *w,
                   const struct t_fx *fx, const char *name)
{
        char *body = t_fixture(name);
        struct eb_page page;
        int more;

        memset(&page, 0, sizeof(page));
        t_feed(w, 200, body, fx->ct, &page);
        if (page.kind != EB_RESP_OK || !page.events_cnt)
                fprintf(stderr, "  %s, %s: %s: %s\n", p->name, name,
                        eb_resp_kind_name(page.kind), page.detail);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK(page.events_cnt > 0);
        check_events(p, &page);
        more = page.more;
        eb_page_fini(&page);
        free(body);
        return more;
}

/* A walk of two pages: next_request only reads the state, page_done
 * advances it and the checkpoint, and the final checkpoint begins the
 * next walk, also after a JSON round trip (it is stored in Kafka). */
static void test_walk(void)
{
        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                const struct t_fx *fx = fx_of(p);
                struct eb_source_cfg s;
                struct eb_walk w;
                char *u1, *u1b, *u2, *auth = NULL, *cps;
                json_t *cp;

                EB_REQUIRE(fx);
                src_init(&s, p, fx);
                begin(&w, p, &s, NULL);
                EB_REQUIRE(p->walk_begin(&w) == 0);
                u1 = t_url(&w, &auth);
                u1b = t_url(&w, NULL);
                EB_REQUIRE(u1 && u1b);
                EB_CHECK_STR(u1, u1b);
                EB_CHECK(auth && !strncmp(auth, "Authorization: ", 15));
                EB_CHECK_INT(feed_ok(p, &w, fx, fx->first), 1);
                /* until page_done, the same request again */
                u2 = t_url(&w, NULL);
                EB_CHECK_STR(u2, u1);
                free(u2);
                p->page_done(&w);
                EB_CHECK_INT(w.pages, 1);
                p->page_done(&w); /* nothing pending: a no-op */
                EB_CHECK_INT(w.pages, 1);
                u2 = t_url(&w, NULL);
                EB_REQUIRE(u2);
                EB_CHECK(strcmp(u2, u1) != 0);
                EB_CHECK_INT(feed_ok(p, &w, fx, fx->last), 0);
                p->page_done(&w);
                EB_CHECK_INT(w.pages, 2);
                p->walk_end(&w);
                EB_REQUIRE(json_is_object(w.cp));
                cps = json_dumps(w.cp, JSON_COMPACT);
                EB_REQUIRE(cps);
                eb_walk_fini(&w);
                cp = json_loads(cps, 0, NULL);
                EB_REQUIRE(cp);
                begin(&w, p, &s, cp);
                json_decref(cp);
                EB_CHECK_INT(p->walk_begin(&w), 0);
                eb_walk_fini(&w);
                free(cps);
                free(u1);
                free(u1b);
                free(u2);
                free(auth);
                t_src_fini(&s);
        }
}

/* Checkpoints that are not one: refused, never silently restarted. */
static void test_bad_checkpoints(void)
{
        static const char *const cps[] = {"[]", "{}", "5", "\"wm\"", "null"};

        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                struct eb_source_cfg s;
                struct eb_walk w;
                size_t i;

                src_init(&s, p, fx_of(p));
                for (i = 0; i < sizeof(cps) / sizeof(cps[0]); i++) {
                        json_t *cp = json_loads(cps[i], JSON_DECODE_ANY, NULL);

                        EB_REQUIRE(cp);
                        if (json_is_null(cp)) {
                                /* null is as good as none: a first start */
                                json_decref(cp);
                                continue;
                        }
                        begin(&w, p, &s, cp);
                        EB_CHECK_INT(p->walk_begin(&w), -EINVAL);
                        eb_walk_fini(&w);
                        json_decref(cp);
                }
                for (i = 0;
                     fx_of(p) && fx_of(p)->bad_cps && fx_of(p)->bad_cps[i];
                     i++) {
                        json_t *cp = json_loads(fx_of(p)->bad_cps[i], 0, NULL);

                        EB_REQUIRE(cp);
                        begin(&w, p, &s, cp);
                        EB_CHECK_INT(p->walk_begin(&w), -EINVAL);
                        eb_walk_fini(&w);
                        json_decref(cp);
                }
                /* a walk not begun builds nothing and takes nothing */
                begin(&w, p, &s, NULL);
                EB_CHECK(t_url(&w, NULL) == NULL);
                {
                        struct eb_page page;

                        memset(&page, 0, sizeof(page));
                        t_feed(&w, 200, "{}", "application/json", &page);
                        EB_CHECK_INT(page.kind, EB_RESP_CLIENT_ERROR);
                        EB_CHECK_INT(page.events_cnt, 0);
                        eb_page_fini(&page);
                }
                eb_walk_fini(&w);
                t_src_fini(&s);
        }
}

/* Error statuses: no events, the walk unchanged (same request, no
 * checkpoint move on page_done). */
static void test_statuses(void)
{
        static const struct {
                long status;
                eb_resp_kind_t kind;
        } cases[] = {
                {500, EB_RESP_RETRY},        {502, EB_RESP_RETRY},
                {503, EB_RESP_RETRY},        {408, EB_RESP_RETRY},
                {0, EB_RESP_RETRY},          {401, EB_RESP_AUTH},
                {429, EB_RESP_RATE_LIMITED}, {206, EB_RESP_BAD_BODY},
        };

        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                struct eb_source_cfg s;
                struct eb_walk w;
                size_t i;

                src_init(&s, p, fx_of(p));
                begin(&w, p, &s, NULL);
                EB_REQUIRE(p->walk_begin(&w) == 0);
                for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                        struct eb_page page;
                        char *before = t_url(&w, NULL), *after, *cp0, *cp1;

                        cp0 = t_cp(&w);
                        memset(&page, 0, sizeof(page));
                        t_feed(&w, cases[i].status, "{\"error\":\"x\"}",
                               "application/json", &page);
                        EB_CHECK_INT(page.kind, cases[i].kind);
                        EB_CHECK_INT(page.events_cnt, 0);
                        EB_CHECK(page.detail[0] != '\0');
                        eb_page_fini(&page);
                        p->page_done(&w);
                        after = t_url(&w, NULL);
                        cp1 = t_cp(&w);
                        EB_CHECK_STR(after, before);
                        EB_CHECK_STR(cp1, cp0);
                        EB_CHECK_INT(w.pages, 0);
                        free(before);
                        free(after);
                        free(cp0);
                        free(cp1);
                }
                eb_walk_fini(&w);
                t_src_fini(&s);
        }
}

static void test_normalize_rejects(void)
{
        static const char *const bad[] = {"5", "[]", "{}", "\"x\"",
                                          "{\"id\":\"\"}"};

        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                struct eb_source_cfg s;
                size_t i, n;

                src_init(&s, p, fx_of(p));
                for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                        json_t *ev = json_loads(bad[i], JSON_DECODE_ANY, NULL);
                        char err[256] = "";

                        EB_REQUIRE(ev);
                        EB_CHECK(p->normalize(&s, ev, err, sizeof(err)) ==
                                 NULL);
                        EB_CHECK(err[0] != '\0');
                        json_decref(ev);
                }
                for (n = 0;
                     fx_of(p) && fx_of(p)->rejects && fx_of(p)->rejects[n].json;
                     n++)
                        ;
                if (n)
                        t_check_rejects(p, &s, fx_of(p)->rejects, n);
                t_src_fini(&s);
        }
}

/* Garbage never crashes a provider, and every answer keeps the contract
 * (provider_test.h, t_garbage_feed). */
static void test_garbage(void)
{
        FOREACH_PROVIDER(pp)
        {
                const struct eb_provider *p = *pp;
                const struct t_fx *fx = fx_of(p);
                struct eb_source_cfg s;
                struct t_garbage g;
                size_t i;

                EB_REQUIRE(fx);
                src_opts(&s, p, fx, 1);
                memset(&g, 0, sizeof(g));
                g.prov = p;
                g.src = &s;
                g.ct = fx->ct;
                for (i = 0; i < 4 && fx->garbage[i]; i++)
                        t_garbage_fixture(&g, fx->garbage[i]);
                EB_CHECK(g.fed > fx->min_fed);
                EB_CHECK_INT(g.bad, 0);
                t_src_fini(&s);
        }
}

static void test_register(void)
{
#define T_REGISTER(x) EB_REQUIRE(eb_provider_register(&eb_provider_##x) == 0);
        T_TEST_PROVIDERS(T_REGISTER)
}

int main(void)
{
        EB_RUN(test_register);
        EB_RUN(test_declarations);
        EB_RUN(test_config);
        EB_RUN(test_walk);
        EB_RUN(test_bad_checkpoints);
        EB_RUN(test_statuses);
        EB_RUN(test_normalize_rejects);
        EB_RUN(test_garbage);
        eb_log_shutdown();
        return eb_test_summary();
}
