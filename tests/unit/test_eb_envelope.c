/* Unit tests for the CloudEvents envelope and topic naming (eb_envelope.c). */
#include "eb_envelope.h"
#include "eb_event.h"
#include "eb_test.h"
#include "eb_util.h"

#include <errno.h>
#include <inttypes.h>

/* 2022-10-06T13:53:31.123Z */
#define T0 INT64_C(1665064411123)

static struct eb_event *make_event(void)
{
        struct eb_event *evt = eb_event_new();

        evt->id = eb_xstrdup("ev_2sYKRjcrA79yKxi3S4Crd7");
        evt->source_name = eb_xstrdup("acme-close");
        evt->provider = eb_xstrdup("close");
        evt->account = eb_xstrdup("orga_XbVPx5f");
        evt->entity_type = eb_xstrdup("opportunity");
        evt->entity_id = eb_xstrdup("oppo_7H4sjNso");
        evt->action = eb_xstrdup("updated");
        evt->actor = eb_xstrdup("user_N6KhMpzH");
        evt->version = eb_xstrdup("2019-01-15T12:48:23.395Z");
        evt->time_ms = T0;
        evt->fields = json_pack("{s:s, s:i}", "status_type", "won",
                                "confidence", 100);
        evt->native = json_pack("{s:s, s:s, s:[s]}", "id",
                                "ev_2sYKRjcrA79yKxi3S4Crd7", "action",
                                "updated", "changed_fields", "status_id");
        return evt;
}

static char *repeat(char c, size_t n)
{
        char *s = eb_xmalloc(n + 1);

        memset(s, c, n);
        s[n] = '\0';
        return s;
}

/* ---- eb_topic_sanitize ------------------------------------------------ */

static void test_sanitize_table(void)
{
        static const struct {
                const char *in, *want;
        } cases[] = {
                {"crm.close.lead.created", "crm.close.lead.created"},
                {"CRM.Close.Lead", "crm.close.lead"},
                {"a_b", "a-b"},
                {"a__b", "a-b"},
                {"a_-_b", "a-b"},
                {"a..b", "a.b"},
                {"a...b....c", "a.b.c"},
                {"a.-b", "a.-b"},
                {"..a..", "a"},
                {"--a--", "a"},
                {"-._a_.-", "a"},
                {"a b/c\\d", "a-b-c-d"},
                {"tab\there", "tab-here"},
                {"status_change.opportunity", "status-change.opportunity"},
                {"activity.email", "activity.email"},
                {"\303\274n\303\257code", "n-code"}, /* UTF-8 bytes */
                {"0123456789", "0123456789"},
                {".", "unnamed"},
                {"..", "unnamed"},
                {"...", "unnamed"},
                {"-", "unnamed"},
                {"___", "unnamed"},
                {"", "unnamed"},
                {"{prefix}", "prefix"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char *got = eb_topic_sanitize(cases[i].in);

                EB_CHECK_STR(got, cases[i].want);
                free(got);
        }
        {
                char *got = eb_topic_sanitize(NULL);

                EB_CHECK_STR(got, "unnamed");
                free(got);
        }
}

static void test_sanitize_idempotent(void)
{
        static const char *const in[] = {
                "A_b..C--d", "..x__y..", "crm.kommo.lead.status_changed",
                "\xff\xfe",  "a.-.-b",
        };
        size_t i;

        for (i = 0; i < sizeof(in) / sizeof(in[0]); i++) {
                char *once = eb_topic_sanitize(in[i]);
                char *twice = eb_topic_sanitize(once);

                EB_CHECK_STR(twice, once);
                free(once);
                free(twice);
        }
}

/* Expected long-name form: first @p keep chars + '-' + 8 hex of the hash of
 * the full sanitized name. */
static char *long_expect(const char *full_sanitized, size_t keep)
{
        uint64_t h = eb_fnv1a64(full_sanitized, strlen(full_sanitized));

        return eb_xasprintf("%.*s-%08" PRIx32, (int)keep, full_sanitized,
                            (uint32_t)(h >> 32));
}

static void test_sanitize_length(void)
{
        char *a249 = repeat('a', 249);
        char *a250 = repeat('a', 250);
        char *A300 = repeat('A', 300);
        char *a300 = repeat('a', 300);
        char *got, *want;
        char *x, *y, *gx, *gy;

        /* 249 is the limit: kept as is. */
        got = eb_topic_sanitize(a249);
        EB_CHECK_STR(got, a249);
        free(got);

        /* 250: cut to 240, then '-' and the hash: 249 characters. */
        got = eb_topic_sanitize(a250);
        want = long_expect(a250, 240);
        EB_CHECK_STR(got, want);
        EB_CHECK_INT(strlen(got), 249);
        free(got);
        free(want);

        /* Uppercase is folded before hashing: same as the lowercase name. */
        got = eb_topic_sanitize(A300);
        want = long_expect(a300, 240);
        EB_CHECK_STR(got, want);
        free(got);
        free(want);

        /* Two long names sharing their first 240 characters differ. */
        x = eb_xasprintf("%s.one", a250);
        y = eb_xasprintf("%s.two", a250);
        gx = eb_topic_sanitize(x);
        gy = eb_topic_sanitize(y);
        EB_CHECK(strcmp(gx, gy) != 0);
        EB_CHECK_INT(strlen(gx), 249);
        EB_CHECK_INT(strlen(gy), 249);
        EB_CHECK(!strncmp(gx, gy, 240));
        free(x);
        free(y);
        free(gx);
        free(gy);

        /* A separator right at the cut is not left dangling before '-'. */
        x = eb_xasprintf("%.*s.%s", 239, a300, a300);
        gx = eb_topic_sanitize(x);
        want = long_expect(x, 239);
        EB_CHECK_STR(gx, want);
        EB_CHECK(gx[238] == 'a' && gx[239] == '-');
        free(x);
        free(gx);
        free(want);

        /* Illegal bytes count after mapping: 600 underscores between two
         * letters collapse to "a-b", well under the limit. */
        x = repeat('_', 600);
        x[0] = 'a';
        x[599] = 'b';
        gx = eb_topic_sanitize(x);
        EB_CHECK_STR(gx, "a-b");
        free(x);
        free(gx);

        free(a249);
        free(a250);
        free(A300);
        free(a300);
}

/* ---- eb_topic_template_check ------------------------------------------ */

static void test_template_check_table(void)
{
        static const struct {
                const char *tmpl;
                int rc;
                const char *msg; /* substring of the error */
        } cases[] = {
                {"{prefix}.{provider}.{entity}.{action}", 0, NULL},
                {"{prefix}.{entity}.{action}", 0, NULL},
                {"{prefix}.{source}.{account}", 0, NULL},
                {"events", 0, NULL},
                {"EVENTS", 0, NULL},
                {"{prefix}-{provider}_{action}", 0, NULL},
                {"", -EINVAL, "empty"},
                {"{foo}", -EINVAL, "\"{foo}\""},
                {"{prefix}.{Entity}", -EINVAL, "\"{Entity}\""},
                {"{prefix", -EINVAL, "unterminated"},
                {"prefix}", -EINVAL, "unmatched"},
                {"{{prefix}}", -EINVAL, "unknown placeholder"},
                {"{}", -EINVAL, "\"{}\""},
                {"...", -EINVAL, "no placeholder"},
                {"._-", -EINVAL, "no placeholder"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                char err[256] = "";
                int rc = eb_topic_template_check(cases[i].tmpl, err,
                                                 sizeof(err));

                EB_CHECK_INT(rc, cases[i].rc);
                if (cases[i].msg && !strstr(err, cases[i].msg)) {
                        fprintf(stderr, "  template \"%s\": message \"%s\"\n",
                                cases[i].tmpl, err);
                        EB_CHECK(strstr(err, cases[i].msg) != NULL);
                }
        }
        {
                char err[256] = "";
                char *big = repeat('a', 2000);

                EB_CHECK_INT(eb_topic_template_check(big, err, sizeof(err)),
                             -EINVAL);
                EB_CHECK(strstr(err, "too long") != NULL);
                EB_CHECK_INT(eb_topic_template_check(NULL, err, sizeof(err)),
                             -EINVAL);
                free(big);
        }
}

/* ---- eb_topic_name ---------------------------------------------------- */

static void test_topic_name_table(void)
{
        static const struct {
                const char *tmpl, *prefix;
                const char *provider, *entity, *action, *source, *account;
                const char *want; /* NULL: expect NULL */
        } cases[] = {
                {"{prefix}.{provider}.{entity}.{action}", "crm", "close",
                 "opportunity", "updated", "acme", "orga_1",
                 "crm.close.opportunity.updated"},
                {"{prefix}.{provider}.{entity}.{action}", "crm", "close",
                 "activity.email", "created", "acme", NULL,
                 "crm.close.activity.email.created"},
                {"{prefix}.{provider}.{entity}.{action}", "crm", "close",
                 "status_change.opportunity", "created", "acme", NULL,
                 "crm.close.status-change.opportunity.created"},
                {"{prefix}.{provider}.{entity}.{action}", "crm", "kommo",
                 "lead", "status_changed", "acme", "example",
                 "crm.kommo.lead.status-changed"},
                {"{prefix}.{provider}.{entity}.{action}", "CRM", "Kommo",
                 "Lead", "Status_Changed", "acme", "example",
                 "crm.kommo.lead.status-changed"},
                {"{prefix}.{provider}.{entity}.{action}", "", "kota",
                 "employee", "created", "k", NULL, "kota.employee.created"},
                {"{prefix}.{provider}.{entity}.{action}", NULL, "kota",
                 "employee", "created", "k", NULL, "kota.employee.created"},
                {"{prefix}.{entity}.{action}", "crm", "kota", "employee",
                 "created", "k", NULL, "crm.employee.created"},
                {"{prefix}.{source}.{account}", "x", "close", "lead", "created",
                 "Acme_Close", NULL, "x.acme-close"},
                {"{prefix}.{source}.{account}", "x", "close", "lead", "created",
                 "acme", "orga_ABC", "x.acme.orga-abc"},
                /* a value cannot inject separators at the ends */
                {"{prefix}.{entity}", "crm.", "close", ".lead.", "created", "a",
                 NULL, "crm.lead"},
                {"{prefix}.{nope}", "crm", "close", "lead", "created", "a",
                 NULL, NULL},
                {"{prefix", "crm", "close", "lead", "created", "a", NULL, NULL},
                {"", "crm", "close", "lead", "created", "a", NULL, "unnamed"},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct eb_event *evt = eb_event_new();
                char *got;

                evt->provider = eb_xstrdup(cases[i].provider);
                evt->entity_type = eb_xstrdup(cases[i].entity);
                evt->action = eb_xstrdup(cases[i].action);
                evt->source_name = eb_xstrdup(cases[i].source);
                evt->account = eb_xstrdup(cases[i].account);
                got = eb_topic_name(cases[i].tmpl, cases[i].prefix, evt);
                if (cases[i].want)
                        EB_CHECK_STR(got, cases[i].want);
                else if (got) {
                        fprintf(stderr, "  \"%s\" gave \"%s\"\n", cases[i].tmpl,
                                got);
                        EB_CHECK(got == NULL);
                }
                free(got);
                eb_event_free(evt);
        }
}

static void test_topic_name_long(void)
{
        struct eb_event *evt = make_event();
        char *entity = repeat('E', 400);
        char *got;

        free(evt->entity_type);
        evt->entity_type = entity;
        got = eb_topic_name("{prefix}.{provider}.{entity}.{action}", "crm",
                            evt);
        EB_REQUIRE(got != NULL);
        EB_CHECK_INT(strlen(got), 249);
        EB_CHECK(!strncmp(got, "crm.close.eeee", 14));
        free(got);
        eb_event_free(evt);
}

/* ---- eb_envelope_render ----------------------------------------------- */

static const char *hdr(const struct eb_envelope *env, const char *name)
{
        int i;

        for (i = 0; i < env->header_cnt; i++)
                if (!strcmp(env->headers[i].name, name))
                        return env->headers[i].value;
        return NULL;
}

static void check_data(json_t *data, const struct eb_event *evt)
{
        EB_CHECK(json_is_object(data));
        EB_CHECK_INT(json_object_size(data), 2);
        EB_CHECK(json_equal(json_object_get(data, "native"), evt->native));
        if (evt->fields)
                EB_CHECK(json_equal(json_object_get(data, "fields"),
                                    evt->fields));
        else
                EB_CHECK(json_is_object(json_object_get(data, "fields")) &&
                         json_object_size(json_object_get(data, "fields")) ==
                                 0);
}

static void test_render_structured(void)
{
        static const char *const order[] = {
                "specversion", "id",           "source",          "type",
                "time",        "subject",      "datacontenttype", "provider",
                "account",     "entitytype",   "entityid",        "action",
                "actor",       "eventversion", "sourcename",      "data",
        };
        struct eb_event *evt = make_event();
        struct eb_envelope env;
        json_error_t jerr;
        json_t *root;
        void *it;
        size_t i = 0;

        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_STRUCTURED,
                                      &env) == 0);
        EB_CHECK_STR(env.topic, "crm.close.opportunity.updated");
        EB_CHECK_STR(env.key, "acme-close/opportunity/oppo_7H4sjNso");
        EB_CHECK_INT(env.key_len, strlen(env.key));
        EB_CHECK_INT(env.value_len, strlen(env.value));
        EB_CHECK_INT(env.header_cnt, 1);
        EB_CHECK_STR(env.headers[0].name, "content-type");
        EB_CHECK_STR(env.headers[0].value, "application/cloudevents+json");
        /* compact: no whitespace between tokens */
        EB_CHECK(strstr(env.value, "\": ") == NULL);
        EB_CHECK(strstr(env.value, ", \"") == NULL);

        root = json_loadb(env.value, env.value_len, JSON_REJECT_DUPLICATES,
                          &jerr);
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(json_string_value(json_object_get(root, "specversion")),
                     "1.0");
        EB_CHECK_STR(json_string_value(json_object_get(root, "id")),
                     "ev_2sYKRjcrA79yKxi3S4Crd7");
        EB_CHECK_STR(json_string_value(json_object_get(root, "source")),
                     "/close/orga_XbVPx5f");
        EB_CHECK_STR(json_string_value(json_object_get(root, "type")),
                     "close.opportunity.updated");
        EB_CHECK_STR(json_string_value(json_object_get(root, "time")),
                     "2022-10-06T13:53:31.123Z");
        EB_CHECK_STR(json_string_value(json_object_get(root, "subject")),
                     "opportunity/oppo_7H4sjNso");
        EB_CHECK_STR(
                json_string_value(json_object_get(root, "datacontenttype")),
                "application/json");
        EB_CHECK_STR(json_string_value(json_object_get(root, "provider")),
                     "close");
        EB_CHECK_STR(json_string_value(json_object_get(root, "account")),
                     "orga_XbVPx5f");
        EB_CHECK_STR(json_string_value(json_object_get(root, "entitytype")),
                     "opportunity");
        EB_CHECK_STR(json_string_value(json_object_get(root, "entityid")),
                     "oppo_7H4sjNso");
        EB_CHECK_STR(json_string_value(json_object_get(root, "action")),
                     "updated");
        EB_CHECK_STR(json_string_value(json_object_get(root, "actor")),
                     "user_N6KhMpzH");
        EB_CHECK_STR(json_string_value(json_object_get(root, "eventversion")),
                     "2019-01-15T12:48:23.395Z");
        EB_CHECK_STR(json_string_value(json_object_get(root, "sourcename")),
                     "acme-close");
        check_data(json_object_get(root, "data"), evt);

        /* Stable attribute order (jansson keeps the document's order). */
        EB_CHECK_INT(json_object_size(root), sizeof(order) / sizeof(*order));
        for (it = json_object_iter(root);
             it && i < sizeof(order) / sizeof(*order);
             it = json_object_iter_next(root, it), i++)
                EB_CHECK_STR(json_object_iter_key(it), order[i]);
        EB_CHECK(!strncmp(env.value,
                          "{\"specversion\":\"1.0\",\"id\":\"ev_2sYKRjcrA79y"
                          "Kxi3S4Crd7\",\"source\":\"/close/orga_XbVPx5f\",",
                          78));
        json_decref(root);
        eb_envelope_fini(&env);
        eb_envelope_fini(&env); /* twice is harmless */
        eb_event_free(evt);
}

static void test_render_deterministic(void)
{
        struct eb_event *evt = make_event();
        struct eb_envelope a, b;

        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_STRUCTURED,
                                      &a) == 0);
        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_STRUCTURED,
                                      &b) == 0);
        EB_CHECK_STR(a.value, b.value);
        eb_envelope_fini(&a);
        eb_envelope_fini(&b);
        eb_event_free(evt);
}

static void test_render_optional_omitted(void)
{
        struct eb_event *evt = make_event();
        struct eb_envelope env;
        json_t *root;

        /* No account: source falls back to the source name, and the
         * account, actor and eventversion attributes are left out. */
        free(evt->account);
        evt->account = NULL;
        free(evt->actor);
        evt->actor = NULL;
        free(evt->version);
        evt->version = NULL;
        json_decref(evt->fields);
        evt->fields = NULL;
        free(evt->entity_id);
        evt->entity_id = NULL;
        EB_REQUIRE(eb_envelope_render(evt, "{prefix}.{entity}.{action}", "crm",
                                      EB_ENVELOPE_STRUCTURED, &env) == 0);
        EB_CHECK_STR(env.topic, "crm.opportunity.updated");
        EB_CHECK_STR(env.key, "acme-close/opportunity/");
        root = json_loads(env.value, 0, NULL);
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(json_string_value(json_object_get(root, "source")),
                     "/close/acme-close");
        EB_CHECK(json_object_get(root, "account") == NULL);
        EB_CHECK(json_object_get(root, "actor") == NULL);
        EB_CHECK(json_object_get(root, "eventversion") == NULL);
        EB_CHECK_STR(json_string_value(json_object_get(root, "subject")),
                     "opportunity/");
        EB_CHECK_STR(json_string_value(json_object_get(root, "entityid")), "");
        check_data(json_object_get(root, "data"), evt);
        json_decref(root);
        eb_envelope_fini(&env);

        /* Empty account counts as missing. */
        evt->account = eb_xstrdup("");
        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_BINARY,
                                      &env) == 0);
        EB_CHECK_STR(hdr(&env, "ce_source"), "/close/acme-close");
        EB_CHECK(hdr(&env, "ce_account") == NULL);
        EB_CHECK(hdr(&env, "ce_actor") == NULL);
        EB_CHECK(hdr(&env, "ce_eventversion") == NULL);
        eb_envelope_fini(&env);
        eb_event_free(evt);
}

static void test_render_binary(void)
{
        static const struct {
                const char *name, *value;
        } want[] = {
                {"ce_specversion", "1.0"},
                {"ce_id", "ev_2sYKRjcrA79yKxi3S4Crd7"},
                {"ce_source", "/close/orga_XbVPx5f"},
                {"ce_type", "close.opportunity.updated"},
                {"ce_time", "2022-10-06T13:53:31.123Z"},
                {"ce_subject", "opportunity/oppo_7H4sjNso"},
                {"ce_provider", "close"},
                {"ce_account", "orga_XbVPx5f"},
                {"ce_entitytype", "opportunity"},
                {"ce_entityid", "oppo_7H4sjNso"},
                {"ce_action", "updated"},
                {"ce_actor", "user_N6KhMpzH"},
                {"ce_eventversion", "2019-01-15T12:48:23.395Z"},
                {"ce_sourcename", "acme-close"},
                {"content-type", "application/json"},
        };
        struct eb_event *evt = make_event();
        struct eb_envelope env;
        json_t *data;
        size_t i;

        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_BINARY,
                                      &env) == 0);
        EB_CHECK_STR(env.topic, "crm.close.opportunity.updated");
        EB_CHECK_STR(env.key, "acme-close/opportunity/oppo_7H4sjNso");
        EB_CHECK_INT(env.header_cnt, sizeof(want) / sizeof(want[0]));
        for (i = 0;
             i < sizeof(want) / sizeof(want[0]) && (int)i < env.header_cnt;
             i++) {
                EB_CHECK_STR(env.headers[i].name, want[i].name);
                EB_CHECK_STR(env.headers[i].value, want[i].value);
        }
        EB_CHECK(hdr(&env, "ce_datacontenttype") == NULL);
        data = json_loadb(env.value, env.value_len, JSON_REJECT_DUPLICATES,
                          NULL);
        EB_REQUIRE(data != NULL);
        check_data(data, evt);
        EB_CHECK(!strncmp(env.value, "{\"fields\":", 10));
        json_decref(data);
        eb_envelope_fini(&env);
        eb_event_free(evt);
}

static void test_render_type_lowercase_and_escaping(void)
{
        struct eb_event *evt = make_event();
        struct eb_envelope env;
        json_t *root;

        free(evt->provider);
        evt->provider = eb_xstrdup("Close");
        json_decref(evt->native);
        evt->native =
                json_pack("{s:s}", "note", "quote \" and \\ and \xc3\xa9");
        EB_REQUIRE(eb_envelope_render(evt, NULL, "crm", EB_ENVELOPE_STRUCTURED,
                                      &env) == 0);
        root = json_loads(env.value, 0, NULL);
        EB_REQUIRE(root != NULL);
        EB_CHECK_STR(json_string_value(json_object_get(root, "type")),
                     "close.opportunity.updated");
        EB_CHECK_STR(json_string_value(json_object_get(
                             json_object_get(json_object_get(root, "data"),
                                             "native"),
                             "note")),
                     "quote \" and \\ and \xc3\xa9");
        json_decref(root);
        eb_envelope_fini(&env);
        eb_event_free(evt);
}

enum { F_ID, F_SOURCE, F_PROVIDER, F_ENTITY, F_ACTION, F_NATIVE };

static void test_render_missing_required(void)
{
        static const struct {
                int field;
                int empty; /* "" instead of NULL */
        } cases[] = {
                {F_ID, 0},       {F_ID, 1},       {F_SOURCE, 0}, {F_SOURCE, 1},
                {F_PROVIDER, 0}, {F_PROVIDER, 1}, {F_ENTITY, 0}, {F_ENTITY, 1},
                {F_ACTION, 0},   {F_ACTION, 1},   {F_NATIVE, 0},
        };
        size_t i;

        for (i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
                struct eb_event *evt = make_event();
                struct eb_envelope env;
                char **slot = NULL;

                switch (cases[i].field) {
                case F_ID:
                        slot = &evt->id;
                        break;
                case F_SOURCE:
                        slot = &evt->source_name;
                        break;
                case F_PROVIDER:
                        slot = &evt->provider;
                        break;
                case F_ENTITY:
                        slot = &evt->entity_type;
                        break;
                case F_ACTION:
                        slot = &evt->action;
                        break;
                default:
                        json_decref(evt->native);
                        evt->native = NULL;
                }
                if (slot) {
                        free(*slot);
                        *slot = cases[i].empty ? eb_xstrdup("") : NULL;
                }
                memset(&env, 0xab, sizeof(env));
                EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm",
                                                EB_ENVELOPE_STRUCTURED, &env),
                             -EINVAL);
                EB_CHECK(env.topic == NULL && env.key == NULL &&
                         env.value == NULL && env.header_cnt == 0);
                eb_envelope_fini(&env);
                eb_event_free(evt);
        }
}

static void test_render_invalid_other(void)
{
        struct eb_event *evt = make_event();
        struct eb_envelope env;

        /* unknown placeholder in the template */
        EB_CHECK_INT(eb_envelope_render(evt, "{prefix}.{bogus}", "crm",
                                        EB_ENVELOPE_STRUCTURED, &env),
                     -EINVAL);
        EB_CHECK(env.topic == NULL && env.value == NULL);
        /* fields must be an object */
        json_decref(evt->fields);
        evt->fields = json_array();
        EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm",
                                        EB_ENVELOPE_STRUCTURED, &env),
                     -EINVAL);
        json_decref(evt->fields);
        evt->fields = NULL;
        /* time outside RFC 3339's range */
        evt->time_ms = -1;
        EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm",
                                        EB_ENVELOPE_STRUCTURED, &env),
                     -EINVAL);
        evt->time_ms = INT64_C(253402300800000); /* year 10000 */
        EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm",
                                        EB_ENVELOPE_STRUCTURED, &env),
                     -EINVAL);
        evt->time_ms = 0; /* the epoch itself is fine */
        EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm",
                                        EB_ENVELOPE_STRUCTURED, &env),
                     0);
        eb_envelope_fini(&env);
        /* bad mode */
        EB_CHECK_INT(eb_envelope_render(evt, NULL, "crm", (eb_envelope_mode_t)7,
                                        &env),
                     -EINVAL);
        eb_event_free(evt);
}

int main(void)
{
        EB_RUN(test_sanitize_table);
        EB_RUN(test_sanitize_idempotent);
        EB_RUN(test_sanitize_length);
        EB_RUN(test_template_check_table);
        EB_RUN(test_topic_name_table);
        EB_RUN(test_topic_name_long);
        EB_RUN(test_render_structured);
        EB_RUN(test_render_deterministic);
        EB_RUN(test_render_optional_omitted);
        EB_RUN(test_render_binary);
        EB_RUN(test_render_type_lowercase_and_escaping);
        EB_RUN(test_render_missing_required);
        EB_RUN(test_render_invalid_other);
        return eb_test_summary();
}
