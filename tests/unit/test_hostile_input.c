/*
 * What a malicious or broken upstream can send, fed to the adapters: JSON
 * nested past jansson's depth limit (and right up to it), invalid UTF-8,
 * huge ids and cursors, too many events, times out of range. Every one
 * must end as a clean EB_RESP_BAD_BODY (the poller backs off and counts a
 * body error), never a crash, a hang or an event that cannot be rendered.
 * Plus the same nesting in the configuration's free-form options.
 */
#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>

#include "eb_config.h"
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_util.h"

#define T_NOW_MS 1700000000000LL
/* jansson 2.14's JSON_PARSER_MAX_DEPTH: deeper documents do not parse. */
#define JANSSON_MAX_DEPTH 2048

static struct eb_config *cfg;

static const struct eb_source_cfg *src(const char *name)
{
        return eb_config_source(cfg, name);
}

/* One 200 response with @p body through a fresh first walk. */
static void feed(const struct eb_provider *prov, const char *source,
                 const char *body, size_t len, struct eb_page *page)
{
        struct eb_response r;
        struct eb_walk w;

        eb_walk_init(&w, prov, src(source), NULL, T_NOW_MS);
        EB_REQUIRE(prov->walk_begin(&w) == 0);
        memset(&r, 0, sizeof(r));
        r.status = 200;
        r.body = body;
        r.body_len = len;
        r.content_type = "application/json";
        r.now_ms = T_NOW_MS;
        eb_page_init(page);
        prov->handle_response(&w, &r, page);
        if (page->kind == EB_RESP_OK) {
                prov->page_done(&w);
                if (!page->more)
                        prov->walk_end(&w);
        }
        eb_walk_fini(&w);
}

static void expect_bad(const struct eb_provider *prov, const char *source,
                       const char *body, size_t len, const char *detail)
{
        struct eb_page page;

        feed(prov, source, body, len, &page);
        if (page.kind != EB_RESP_BAD_BODY || !strstr(page.detail, detail))
                fprintf(stderr, "  %s: %s: %s\n", source,
                        eb_resp_kind_name(page.kind), page.detail);
        EB_CHECK_INT(page.kind, EB_RESP_BAD_BODY);
        EB_CHECK_INT(page.events_cnt, 0);
        EB_CHECK(strstr(page.detail, detail) != NULL);
        eb_page_fini(&page);
}

/* One event the adapter cannot normalize: a poison event for the
 * dead-letter topic (the page itself is fine), with @p detail in its
 * reason. */
static void expect_poison(const struct eb_provider *prov, const char *source,
                          const char *body, size_t len, const char *detail)
{
        struct eb_page page;
        const struct eb_event *e;

        feed(prov, source, body, len, &page);
        EB_CHECK_INT(page.kind, EB_RESP_OK);
        EB_CHECK_INT(page.events_cnt, 1);
        e = page.events_cnt ? page.events[0] : NULL;
        EB_CHECK(e && e->deadletter && strstr(e->deadletter, detail));
        EB_CHECK(e && e->id && !strncmp(e->id, "deadletter-", 11));
        EB_CHECK(e && e->native && json_is_object(e->native));
        EB_CHECK(strstr(page.detail, "dead-letter") != NULL);
        eb_page_fini(&page);
}

/* "<pre>" + @p depth x '[' + "<mid>" + @p depth x ']' + "<post>" */
static char *nested(const char *pre, size_t depth, const char *mid,
                    const char *post)
{
        size_t a = strlen(pre), m = strlen(mid), z = strlen(post);
        char *s = eb_xmalloc(a + 2 * depth + m + z + 1);

        memcpy(s, pre, a);
        memset(s + a, '[', depth);
        memcpy(s + a + depth, mid, m);
        memset(s + a + depth + m, ']', depth);
        memcpy(s + a + 2 * depth + m, post, z + 1);
        return s;
}

static const char close_ev_fmt[] =
        "{\"id\":\"%s\",\"date_created\":\"2023-11-14T22:09:58.395000\","
        "\"date_updated\":\"%s\",\"organization_id\":\"orga_1\","
        "\"object_type\":\"lead\",\"object_id\":\"lead_1\","
        "\"action\":\"created\",\"data\":%s}";

static char *close_page(const char *id, const char *updated, const char *data)
{
        char *ev = eb_xasprintf(close_ev_fmt, id, updated, data);
        char *page = eb_xasprintf("{\"data\":[%s],\"cursor_next\":null}", ev);

        free(ev);
        return page;
}

/* ---- nesting ----------------------------------------------------------- */

static void test_jansson_depth_limit(void)
{
        json_error_t err;
        char *ok = nested("", JANSSON_MAX_DEPTH, "", "");
        char *deep = nested("", JANSSON_MAX_DEPTH + 1, "", "");
        json_t *j;

        j = json_loads(ok, 0, &err);
        EB_CHECK(j != NULL);
        json_decref(j);
        j = json_loads(deep, 0, &err);
        EB_CHECK(j == NULL);
        EB_CHECK(strstr(err.text, "maximum parsing depth") != NULL);
        free(ok);
        free(deep);
}

static void test_deep_pages_refused(void)
{
        const size_t depth = 100000;
        char *page;

        /* Close and Kota: the list itself nested 100,000 deep. */
        page = nested("{\"data\":", depth, "", ",\"cursor_next\":null}");
        expect_bad(&eb_provider_close, "c", page, strlen(page), "");
        free(page);
        page = nested("{\"items\":", depth, "", ",\"has_next_page\":false}");
        expect_bad(&eb_provider_kota, "k", page, strlen(page), "");
        free(page);
        /* Kommo's HAL envelope. */
        page = nested("{\"_embedded\":{\"events\":", depth, "", "}}");
        expect_bad(&eb_provider_kommo, "m", page, strlen(page), "");
        free(page);
        /* Just past the limit, inside one event's data. */
        page = nested("{\"data\":[{\"id\":\"ev_1\",\"data\":",
                      JANSSON_MAX_DEPTH, "", "}],\"cursor_next\":null}");
        expect_bad(&eb_provider_close, "c", page, strlen(page), "");
        free(page);
}

/* Nesting up to the limit parses, so the adapter, the envelope and the
 * dedupe key must all cope with it (recursion in json_dumps included). */
static void test_deepest_accepted_event_renders(void)
{
        /* 3 levels are taken by the page, its data array and the event. */
        char *data = nested("", JANSSON_MAX_DEPTH - 3, "", "");
        char *page = close_page("ev_deep", "2023-11-14T22:09:58.395000", data);
        struct eb_envelope env;
        struct eb_page p;

        feed(&eb_provider_close, "c", page, strlen(page), &p);
        if (p.kind != EB_RESP_OK)
                fprintf(stderr, "  %s\n", p.detail);
        EB_REQUIRE(p.kind == EB_RESP_OK);
        EB_REQUIRE(p.events_cnt == 1);
        EB_CHECK(eb_envelope_render(p.events[0], cfg->topic_template,
                                    cfg->topic_prefix, EB_ENVELOPE_STRUCTURED,
                                    &env) == 0);
        EB_CHECK(env.value && strstr(env.value, "\"ev_deep\""));
        eb_envelope_fini(&env);
        eb_page_fini(&p);
        free(page);
        free(data);
}

/* ---- strings ------------------------------------------------------------ */

static void test_invalid_utf8_refused(void)
{
        char *page =
                close_page("ev_\xff\xfe", "2023-11-14T22:09:58.395000", "{}");

        expect_bad(&eb_provider_close, "c", page, strlen(page), "");
        free(page);
        page = close_page("ev_1", "2023-11-14T22:09:58.395000",
                          "{\"name\":\"\xc3\"}");
        expect_bad(&eb_provider_close, "c", page, strlen(page), "");
        free(page);
        /* An escaped lone surrogate is invalid UTF-8 after decoding. */
        page = close_page("ev_1", "2023-11-14T22:09:58.395000",
                          "{\"name\":\"\\ud800\"}");
        expect_bad(&eb_provider_close, "c", page, strlen(page), "");
        free(page);
}

static void test_huge_ids_refused(void)
{
        char *id = eb_xmalloc(300001), *page;

        memset(id, 'x', 300000);
        id[300000] = '\0';
        memcpy(id, "ev_", 3);
        page = close_page(id, "2023-11-14T22:09:58.395000", "{}");
        expect_poison(&eb_provider_close, "c", page, strlen(page), "\"id\"");
        free(page);
        /* One byte over the longest id accepted. */
        id[EB_PROVIDER_MAX_ID + 1] = '\0';
        page = close_page(id, "2023-11-14T22:09:58.395000", "{}");
        expect_poison(&eb_provider_close, "c", page, strlen(page), "\"id\"");
        free(page);
        /* Exactly the longest is fine. */
        id[EB_PROVIDER_MAX_ID] = '\0';
        page = close_page(id, "2023-11-14T22:09:58.395000", "{}");
        {
                struct eb_page p;

                feed(&eb_provider_close, "c", page, strlen(page), &p);
                EB_CHECK_INT(p.kind, EB_RESP_OK);
                EB_CHECK_INT(p.events_cnt, 1);
                eb_page_fini(&p);
        }
        free(page);
        /* Kota and Kommo ids. */
        id[300000 - 1] = '\0';
        memset(id, 'y', 300000 - 1);
        page = eb_xasprintf("{\"items\":[{\"id\":\"%s\",\"type\":\"employee."
                            "created\",\"created\":\"2023-11-14T22:00:00Z\","
                            "\"data\":{}}],\"has_next_page\":false}",
                            id);
        expect_poison(&eb_provider_kota, "k", page, strlen(page), "\"id\"");
        free(page);
        page = eb_xasprintf("{\"_embedded\":{\"events\":[{\"id\":\"%s\","
                            "\"type\":\"lead_added\",\"entity_type\":\"lead\","
                            "\"entity_id\":1,\"created_at\":1700000000}]}}",
                            id);
        expect_poison(&eb_provider_kommo, "m", page, strlen(page), "\"id\"");
        free(page);
        free(id);
}

static void test_huge_cursor_refused(void)
{
        char *cur = eb_xmalloc(EB_PROVIDER_MAX_CURSOR + 2), *ev, *page;

        memset(cur, 'c', EB_PROVIDER_MAX_CURSOR + 1);
        cur[EB_PROVIDER_MAX_CURSOR + 1] = '\0';
        ev = eb_xasprintf(close_ev_fmt, "ev_1", "2023-11-14T22:09:58.395000",
                          "{}");
        page = eb_xasprintf("{\"data\":[%s],\"cursor_next\":\"%s\"}", ev, cur);
        expect_bad(&eb_provider_close, "c", page, strlen(page), "cursor");
        free(page);
        free(ev);
        free(cur);
}

static void test_too_many_events_refused(void)
{
        struct eb_buf b;
        size_t i;
        int rc = 0;

        eb_buf_init(&b, 64u << 20);
        rc |= eb_buf_append_str(&b, "{\"data\":[");
        for (i = 0; i <= EB_PROVIDER_MAX_PAGE_EVENTS; i++) {
                char id[32];

                snprintf(id, sizeof(id), "ev_%zu", i);
                rc |= eb_buf_printf(&b, close_ev_fmt, id,
                                    "2023-11-14T22:09:58.395000", "{}");
                rc |= eb_buf_append_str(&b, ",");
        }
        b.data[b.len - 1] = ']';
        rc |= eb_buf_append_str(&b, ",\"cursor_next\":null}");
        EB_REQUIRE(rc == 0);
        expect_bad(&eb_provider_close, "c", b.data, b.len, "");
        eb_buf_fini(&b);
}

/* ---- times -------------------------------------------------------------- */

static void test_times_out_of_range_refused(void)
{
        static const char *const bad[] = {
                "0804-11-14T22:12:30.000000",
                "1969-12-31T23:59:59.999000",
                "9999-12-31T23:59:59.999-01:00",
        };
        size_t i;
        char *page;

        for (i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
                page = close_page("ev_1", bad[i], "{}");
                expect_poison(&eb_provider_close, "c", page, strlen(page),
                              "date_updated");
                free(page);
                page = eb_xasprintf("{\"items\":[{\"id\":\"evt_1\",\"type\":"
                                    "\"employee.created\",\"created\":\"%s\","
                                    "\"data\":{}}],\"has_next_page\":false}",
                                    bad[i]);
                expect_poison(&eb_provider_kota, "k", page, strlen(page),
                              "created");
                free(page);
        }
        page = eb_xasprintf("{\"_embedded\":{\"events\":[{\"id\":\"e1\","
                            "\"type\":\"lead_added\",\"entity_type\":\"lead\","
                            "\"entity_id\":1,\"created_at\":%lld}]}}",
                            (long long)INT64_MAX / 100);
        expect_poison(&eb_provider_kommo, "m", page, strlen(page),
                      "created_at");
        free(page);
}

/* ---- configuration ------------------------------------------------------ */

static void test_deep_options_in_config(void)
{
        char err[1024];
        char *doc = nested("{\"sources\":[{\"name\":\"x\",\"provider\":"
                           "\"kota\",\"credentials\":{\"api_key\":\"k-123\"},"
                           "\"options\":{\"deep\":",
                           JANSSON_MAX_DEPTH - 5, "\"${HOME}\"", "}}]}");
        struct eb_config *c;

        /* Interpolation walks the options recursively, at any depth. */
        c = eb_config_load_string(doc, err, sizeof(err));
        EB_CHECK(c != NULL);
        eb_config_free(c);
        free(doc);
        doc = nested("{\"sources\":[{\"name\":\"x\",\"options\":", 100000, "",
                     "}]}");
        c = eb_config_load_string(doc, err, sizeof(err));
        EB_CHECK(c == NULL);
        EB_CHECK(strstr(err, "depth") != NULL);
        free(doc);
}

int main(void)
{
        char err[1024];

        cfg = eb_config_load_string(
                "{\"sources\":["
                "{\"name\":\"c\",\"provider\":\"close\","
                "\"credentials\":{\"api_key\":\"close-key-t\"}},"
                "{\"name\":\"k\",\"provider\":\"kota\","
                "\"credentials\":{\"api_key\":\"pk_test_t\"}},"
                "{\"name\":\"m\",\"provider\":\"kommo\","
                "\"base_url\":\"https://m.kommo.com\","
                "\"credentials\":{\"token\":\"kommo-token-t\"}}]}",
                err, sizeof(err));
        if (!cfg) {
                fprintf(stderr, "config: %s\n", err);
                return 1;
        }
        EB_RUN(test_jansson_depth_limit);
        EB_RUN(test_deep_pages_refused);
        EB_RUN(test_deepest_accepted_event_renders);
        EB_RUN(test_invalid_utf8_refused);
        EB_RUN(test_huge_ids_refused);
        EB_RUN(test_huge_cursor_refused);
        EB_RUN(test_too_many_events_refused);
        EB_RUN(test_times_out_of_range_refused);
        EB_RUN(test_deep_options_in_config);
        eb_config_free(cfg);
        eb_log_clear_secrets();
        return eb_test_summary();
}
