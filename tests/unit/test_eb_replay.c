/*
 * Unit tests for eb_replay: positions (--from/--until/--to), partition
 * lists and topic specs, rates, envelope reading in structured and binary
 * mode, filters, HTTP retry decisions and backoff, the
 * evbridge-replay-from header, and the two offset searches against fake
 * partitions with gaps (transaction markers).
 */
#include "eb_replay.h"
#include "eb_test.h"
#include "eb_time.h"

#include <errno.h>
#include <stdint.h>

#define NOW 1718000000000LL /* 2024-06-10T06:13:20Z */

static void test_pos_forms(void)
{
        struct eb_replay_pos p;
        char err[256];

        EB_CHECK_INT(eb_replay_pos_parse("beginning", NOW, EB_REPLAY_ALLOW_FROM,
                                         &p, err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_BEGINNING);
        EB_CHECK_INT(eb_replay_pos_parse("earliest", NOW, EB_REPLAY_ALLOW_FROM,
                                         &p, err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_BEGINNING);
        EB_CHECK_INT(eb_replay_pos_parse("end", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_END);
        EB_CHECK_INT(eb_replay_pos_parse("latest", NOW, EB_REPLAY_ALLOW_FROM,
                                         &p, err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_END);
        EB_CHECK_INT(eb_replay_pos_parse("1234", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_OFFSET);
        EB_CHECK_INT(p.value, 1234);
        EB_CHECK_INT(eb_replay_pos_parse("0", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_OFFSET); /* not a duration */
        EB_CHECK_INT(p.value, 0);
        EB_CHECK_INT(eb_replay_pos_parse("-25", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_TAIL);
        EB_CHECK_INT(p.value, 25);
        EB_CHECK_INT(eb_replay_pos_parse("2024-06-10T00:00:00Z", NOW,
                                         EB_REPLAY_ALLOW_FROM, &p, err,
                                         sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_TIME);
        EB_CHECK_INT(p.value, 1717977600000LL);
        EB_CHECK_INT(eb_replay_pos_parse("2024-06-10T02:00:00.250+02:00", NOW,
                                         EB_REPLAY_ALLOW_FROM, &p, err,
                                         sizeof(err)),
                     0);
        EB_CHECK_INT(p.value, 1717977600250LL);
        EB_CHECK_INT(eb_replay_pos_parse("2h", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_TIME);
        EB_CHECK_INT(p.value, NOW - 2 * 3600 * 1000);
        EB_CHECK_INT(eb_replay_pos_parse("1h30m", NOW, EB_REPLAY_ALLOW_FROM, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(p.value, NOW - 90 * 60 * 1000);
        EB_CHECK_INT(eb_replay_pos_parse("group:billing", NOW,
                                         EB_REPLAY_ALLOW_FROM, &p, err,
                                         sizeof(err)),
                     0);
        EB_CHECK_INT(p.kind, EB_REPLAY_POS_GROUP);
        EB_CHECK_STR(p.group, "billing");
}

static void test_pos_errors(void)
{
        static const char *const bad[] = {"",
                                          "x",
                                          "-0",
                                          "-",
                                          "+5",
                                          " 5",
                                          "5 ",
                                          "1e3",
                                          "-2h",
                                          "group:",
                                          "12:30",
                                          "2h30",
                                          "0x10",
                                          "2024-13-01T00:00:00Z",
                                          "99999999999999999999",
                                          "beginning2",
                                          NULL};
        struct eb_replay_pos p;
        char err[256];
        size_t i;

        for (i = 0; bad[i]; i++) {
                err[0] = '\0';
                if (eb_replay_pos_parse(bad[i], NOW, EB_REPLAY_ALLOW_FROM, &p,
                                        err, sizeof(err)) != -EINVAL)
                        fprintf(stderr, "  accepted \"%s\"\n", bad[i]);
                EB_CHECK(err[0] != '\0');
        }
        /* Kinds outside the mask are refused with a message naming them. */
        EB_CHECK_INT(eb_replay_pos_parse("beginning", NOW,
                                         EB_REPLAY_ALLOW_UNTIL, &p, err,
                                         sizeof(err)),
                     -EINVAL);
        EB_CHECK(strstr(err, "not allowed") != NULL);
        EB_CHECK_INT(eb_replay_pos_parse("-3", NOW, EB_REPLAY_ALLOW_UNTIL, &p,
                                         err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_pos_parse("group:g", NOW, EB_REPLAY_ALLOW_RESET,
                                         &p, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK(strstr(err, "group:NAME") != NULL);
        EB_CHECK_INT(eb_replay_pos_parse("end", NOW, EB_REPLAY_ALLOW_UNTIL, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(eb_replay_pos_parse("5m", NOW, EB_REPLAY_ALLOW_UNTIL, &p,
                                         err, sizeof(err)),
                     0);
        EB_CHECK_INT(eb_replay_pos_parse("-3", NOW, EB_REPLAY_ALLOW_RESET, &p,
                                         err, sizeof(err)),
                     0);
}

static void test_ppos(void)
{
        struct eb_replay_ppos pp;
        char err[256];

        EB_CHECK_INT(eb_replay_ppos_parse("crm.close.lead.updated:0:1234", NOW,
                                          EB_REPLAY_ALLOW_FROM, &pp, err,
                                          sizeof(err)),
                     0);
        EB_CHECK_STR(pp.topic, "crm.close.lead.updated");
        EB_CHECK_INT(pp.partition, 0);
        EB_CHECK_INT(pp.pos.kind, EB_REPLAY_POS_OFFSET);
        EB_CHECK_INT(pp.pos.value, 1234);
        /* A plain time is not taken for TOPIC:PARTITION:POS. */
        EB_CHECK_INT(eb_replay_ppos_parse("2024-06-10T00:00:00Z", NOW,
                                          EB_REPLAY_ALLOW_FROM, &pp, err,
                                          sizeof(err)),
                     0);
        EB_CHECK_STR(pp.topic, "");
        EB_CHECK_INT(pp.partition, -1);
        EB_CHECK_INT(pp.pos.kind, EB_REPLAY_POS_TIME);
        /* ...but a partition position may be a time. */
        EB_CHECK_INT(eb_replay_ppos_parse("t_1:7:2024-06-10T00:00:00Z", NOW,
                                          EB_REPLAY_ALLOW_FROM, &pp, err,
                                          sizeof(err)),
                     0);
        EB_CHECK_STR(pp.topic, "t_1");
        EB_CHECK_INT(pp.partition, 7);
        EB_CHECK_INT(pp.pos.value, 1717977600000LL);
        EB_CHECK_INT(eb_replay_ppos_parse("t:2:-5", NOW, EB_REPLAY_ALLOW_FROM,
                                          &pp, err, sizeof(err)),
                     0);
        EB_CHECK_INT(pp.pos.kind, EB_REPLAY_POS_TAIL);
        EB_CHECK_INT(eb_replay_ppos_parse("t:2:end", NOW, EB_REPLAY_ALLOW_FROM,
                                          &pp, err, sizeof(err)),
                     0);
        EB_CHECK_INT(pp.pos.kind, EB_REPLAY_POS_END);
        EB_CHECK_INT(eb_replay_ppos_parse("t:x:5", NOW, EB_REPLAY_ALLOW_FROM,
                                          &pp, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_ppos_parse("t::5", NOW, EB_REPLAY_ALLOW_FROM,
                                          &pp, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_ppos_parse("bad topic:1:5", NOW,
                                          EB_REPLAY_ALLOW_FROM, &pp, err,
                                          sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_ppos_parse("t:1:nope", NOW, EB_REPLAY_ALLOW_FROM,
                                          &pp, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_ppos_parse("t:1:group:g", NOW,
                                          EB_REPLAY_ALLOW_FROM, &pp, err,
                                          sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_ppos_parse("t:1:beginning", NOW,
                                          EB_REPLAY_ALLOW_UNTIL, &pp, err,
                                          sizeof(err)),
                     -EINVAL);
}

static void test_partitions(void)
{
        int32_t *v = NULL;
        size_t n = 0;
        char err[256];

        EB_CHECK_INT(
                eb_replay_partitions_parse("0,2", &v, &n, err, sizeof(err)), 0);
        EB_REQUIRE(n == 2);
        EB_CHECK_INT(v[0], 0);
        EB_CHECK_INT(v[1], 2);
        free(v);
        EB_CHECK_INT(
                eb_replay_partitions_parse("7,0-3,2", &v, &n, err, sizeof(err)),
                0);
        EB_REQUIRE(n == 5); /* sorted, deduplicated */
        EB_CHECK_INT(v[0], 0);
        EB_CHECK_INT(v[3], 3);
        EB_CHECK_INT(v[4], 7);
        free(v);
        EB_CHECK_INT(eb_replay_partitions_parse("", &v, &n, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_partitions_parse("1,", &v, &n, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(
                eb_replay_partitions_parse("3-1", &v, &n, err, sizeof(err)),
                -EINVAL);
        EB_CHECK_INT(eb_replay_partitions_parse("-1", &v, &n, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_partitions_parse("a", &v, &n, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_partitions_parse("0-999999", &v, &n, err,
                                                sizeof(err)),
                     -EINVAL); /* too many */
        EB_CHECK(strstr(err, "too long") != NULL);
        EB_CHECK(v == NULL && n == 0);
}

static void test_topic_specs(void)
{
        struct eb_replay_topic_spec s;
        char err[256];

        EB_CHECK_INT(eb_replay_topic_spec_parse("crm.close.lead.updated", &s,
                                                err, sizeof(err)),
                     0);
        EB_CHECK(!s.is_regex && !s.parts);
        EB_CHECK(eb_replay_topic_spec_match(&s, "crm.close.lead.updated"));
        EB_CHECK(!eb_replay_topic_spec_match(&s, "crm.close.lead.updatedx"));
        eb_replay_topic_spec_fini(&s);

        EB_CHECK_INT(
                eb_replay_topic_spec_parse("crm.a:0,2", &s, err, sizeof(err)),
                0);
        EB_CHECK_STR(s.pattern, "crm.a");
        EB_CHECK_INT(s.nparts, 2);
        eb_replay_topic_spec_fini(&s);

        EB_CHECK_INT(
                eb_replay_topic_spec_parse("^crm\\..*", &s, err, sizeof(err)),
                0);
        EB_CHECK(s.is_regex && !s.parts);
        EB_CHECK(eb_replay_topic_spec_match(&s, "crm.kota.employee.created"));
        EB_CHECK(!eb_replay_topic_spec_match(&s, "crmx.a"));
        EB_CHECK(!eb_replay_topic_spec_match(&s, "other"));
        eb_replay_topic_spec_fini(&s);

        EB_CHECK_INT(eb_replay_topic_spec_parse("^crm\\.close\\..*:1", &s, err,
                                                sizeof(err)),
                     0);
        EB_CHECK(s.is_regex && s.nparts == 1 && s.parts[0] == 1);
        EB_CHECK(eb_replay_topic_spec_match(&s, "crm.close.lead.updated"));
        eb_replay_topic_spec_fini(&s);

        EB_CHECK_INT(eb_replay_topic_spec_parse("^(", &s, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK(strstr(err, "regex") != NULL);
        EB_CHECK_INT(eb_replay_topic_spec_parse("a b", &s, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_topic_spec_parse("", &s, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_topic_spec_parse("t:", &s, err, sizeof(err)),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_topic_spec_parse("t:3-1", &s, err, sizeof(err)),
                     -EINVAL);
        eb_replay_topic_spec_fini(NULL);

        EB_CHECK(eb_replay_topic_name_valid("a.b_c-D9"));
        EB_CHECK(!eb_replay_topic_name_valid(".."));
        EB_CHECK(!eb_replay_topic_name_valid("a/b"));
        EB_CHECK(!eb_replay_topic_name_valid("a:b"));
}

static void test_rate(void)
{
        double r = 0;

        EB_CHECK_INT(eb_replay_rate_parse("50", &r), 0);
        EB_CHECK(r == 50.0);
        EB_CHECK_INT(eb_replay_rate_parse("50/s", &r), 0);
        EB_CHECK(r == 50.0);
        EB_CHECK_INT(eb_replay_rate_parse("120/m", &r), 0);
        EB_CHECK(r == 2.0);
        EB_CHECK_INT(eb_replay_rate_parse("0.5/s", &r), 0);
        EB_CHECK(r == 0.5);
        EB_CHECK_INT(eb_replay_rate_parse("3600/h", &r), 0);
        EB_CHECK(r == 1.0);
        EB_CHECK_INT(eb_replay_rate_parse("0", &r), -EINVAL);
        EB_CHECK_INT(eb_replay_rate_parse("-1", &r), -EINVAL);
        EB_CHECK_INT(eb_replay_rate_parse("5/d", &r), -EINVAL);
        EB_CHECK_INT(eb_replay_rate_parse("/s", &r), -EINVAL);
        EB_CHECK_INT(eb_replay_rate_parse("x", &r), -EINVAL);
        EB_CHECK_INT(eb_replay_rate_parse("nan", &r), -EINVAL);
}

static const char structured[] =
        "{\"specversion\":\"1.0\",\"id\":\"ev_1\",\"source\":\"/close/orga_1\","
        "\"type\":\"close.lead.updated\",\"time\":\"2024-06-01T10:00:00.000Z\","
        "\"subject\":\"lead/lead_42\",\"datacontenttype\":\"application/"
        "json\",\"provider\":\"close\",\"entitytype\":\"lead\",\"entityid\":"
        "\"lead_42\",\"action\":\"updated\",\"sourcename\":\"acme-close\","
        "\"data\":{\"fields\":{\"x\":1.5},\"native\":{\"id\":\"ev_1\"}}}";

static void test_record_structured(void)
{
        struct eb_replay_record rec;
        char err[256];

        EB_REQUIRE(eb_replay_record_parse(structured, strlen(structured), NULL,
                                          0, &rec, err, sizeof(err)) == 0);
        EB_CHECK(!rec.binary);
        EB_CHECK_STR(rec.id, "ev_1");
        EB_CHECK_STR(rec.type, "close.lead.updated");
        EB_CHECK_STR(rec.source, "/close/orga_1");
        EB_CHECK_STR(rec.sourcename, "acme-close");
        EB_CHECK_STR(rec.subject, "lead/lead_42");
        EB_CHECK_STR(rec.entityid, "lead_42");
        EB_CHECK(rec.has_time);
        EB_CHECK_INT(rec.time_ms, 1717236000000LL);
        /* The envelope is the value itself, byte for byte. */
        EB_CHECK(rec.envelope == structured);
        EB_CHECK_INT(rec.envelope_len, strlen(structured));
        eb_replay_record_fini(&rec);
        EB_CHECK(rec.type == NULL);
}

static void test_record_structured_multiline(void)
{
        const char *v = "{\n  \"specversion\": \"1.0\",\n  \"id\": \"a\",\n"
                        "  \"subject\": \"lead/9\",\n  \"data\": {}\n}\n";
        struct eb_replay_record rec;
        char err[256];

        EB_REQUIRE(eb_replay_record_parse(v, strlen(v), NULL, 0, &rec, err,
                                          sizeof(err)) == 0);
        /* Re-encoded on one line (NDJSON), order kept; no entityid
         * extension, so it comes from the subject. */
        EB_CHECK_STR(rec.envelope, "{\"specversion\":\"1.0\",\"id\":\"a\","
                                   "\"subject\":\"lead/9\",\"data\":{}}");
        EB_CHECK_STR(rec.entityid, "9");
        EB_CHECK(!rec.has_time);
        eb_replay_record_fini(&rec);
}

static void test_record_not_envelope(void)
{
        static const char *const bad[] = {
                "not json",          "[1,2]",
                "{\"id\":\"x\"}",    "{\"specversion\":1}",
                "{\"a\":1,\"a\":2}", NULL};
        struct eb_replay_record rec;
        char err[256];
        size_t i;

        for (i = 0; bad[i]; i++) {
                err[0] = '\0';
                EB_CHECK_INT(eb_replay_record_parse(bad[i], strlen(bad[i]),
                                                    NULL, 0, &rec, err,
                                                    sizeof(err)),
                             -EINVAL);
                EB_CHECK(err[0] != '\0');
                eb_replay_record_fini(&rec);
        }
        EB_CHECK_INT(eb_replay_record_parse(NULL, 0, NULL, 0, &rec, err,
                                            sizeof(err)),
                     -EINVAL);
        eb_replay_record_fini(&rec);
}

#define HDR(n, v)                                                              \
        {                                                                      \
                n, v, sizeof(v) - 1                                            \
        }

static void test_record_binary(void)
{
        const char data[] = "{\"fields\":{},\"native\":{\"id\":7}}";
        const struct eb_replay_hdr hdrs[] = {
                HDR("ce_specversion", "1.0"),
                HDR("ce_id", "7"),
                HDR("ce_source", "/kota/p1"),
                HDR("ce_type", "kota.employee.created"),
                HDR("ce_time", "2024-06-01T10:00:00.000Z"),
                HDR("ce_subject", "employee/e\"1"),
                HDR("ce_provider", "kota"),
                HDR("ce_entitytype", "employee"),
                HDR("ce_entityid", "e\"1"),
                HDR("ce_action", "created"),
                HDR("ce_sourcename", "acme-kota"),
                HDR("content-type", "application/json"),
                HDR("other", "ignored"),
        };
        struct eb_replay_record rec;
        char err[256];

        EB_REQUIRE(eb_replay_record_parse(data, strlen(data), hdrs,
                                          sizeof(hdrs) / sizeof(hdrs[0]), &rec,
                                          err, sizeof(err)) == 0);
        EB_CHECK(rec.binary);
        EB_CHECK_STR(rec.type, "kota.employee.created");
        EB_CHECK_STR(rec.entityid, "e\"1");
        EB_CHECK_STR(rec.sourcename, "acme-kota");
        EB_CHECK(rec.has_time);
        EB_CHECK_STR(rec.envelope,
                     "{\"specversion\":\"1.0\",\"id\":\"7\",\"source\":"
                     "\"/kota/p1\",\"type\":\"kota.employee.created\","
                     "\"time\":\"2024-06-01T10:00:00.000Z\",\"subject\":"
                     "\"employee/e\\\"1\",\"datacontenttype\":"
                     "\"application/json\",\"provider\":\"kota\","
                     "\"entitytype\":\"employee\",\"entityid\":\"e\\\"1\","
                     "\"action\":\"created\",\"sourcename\":\"acme-kota\","
                     "\"data\":{\"fields\":{},\"native\":{\"id\":7}}}");
        eb_replay_record_fini(&rec);
}

static void test_record_binary_odd(void)
{
        const unsigned char bin[] = {0xff, 0x00, 0x41};
        const struct eb_replay_hdr hdrs[] = {
                HDR("ce_specversion", "1.0"),
                HDR("ce_id", "x"),
                HDR("content-type", "application/octet-stream"),
        };
        const struct eb_replay_hdr badutf[] = {
                HDR("ce_specversion", "1.0"),
                HDR("ce_id", "\xff\xfe"),
        };
        struct eb_replay_record rec;
        char err[256];

        /* Non-JSON data goes to data_base64. */
        EB_REQUIRE(eb_replay_record_parse(bin, sizeof(bin), hdrs, 3, &rec, err,
                                          sizeof(err)) == 0);
        EB_CHECK_STR(rec.envelope, "{\"specversion\":\"1.0\",\"id\":\"x\","
                                   "\"datacontenttype\":\"application/"
                                   "octet-stream\",\"data_base64\":\"/wBB\"}");
        eb_replay_record_fini(&rec);
        /* No value: no data member. */
        EB_REQUIRE(eb_replay_record_parse(NULL, 0, hdrs, 2, &rec, err,
                                          sizeof(err)) == 0);
        EB_CHECK_STR(rec.envelope, "{\"specversion\":\"1.0\",\"id\":\"x\"}");
        eb_replay_record_fini(&rec);
        EB_CHECK_INT(eb_replay_record_parse(NULL, 0, badutf, 2, &rec, err,
                                            sizeof(err)),
                     -EINVAL);
        EB_CHECK(strstr(err, "UTF-8") != NULL);
        eb_replay_record_fini(&rec);
}

static struct eb_replay_record mkrec(const char *type, const char *source,
                                     const char *sourcename,
                                     const char *subject, const char *entity,
                                     int64_t t)
{
        struct eb_replay_record r;

        memset(&r, 0, sizeof(r));
        r.type = (char *)type;
        r.source = (char *)source;
        r.sourcename = (char *)sourcename;
        r.subject = (char *)subject;
        r.entityid = (char *)entity;
        r.id = (char *)"ev";
        r.has_time = t >= 0;
        r.time_ms = t;
        return r;
}

static void test_filter(void)
{
        eb_replay_filter_t *f = eb_replay_filter_new();
        struct eb_replay_record a = mkrec("close.lead.updated", "/close/o1",
                                          "acme-close", "lead/l1", "l1", 1000);
        struct eb_replay_record b =
                mkrec("kommo.lead.status_changed", "/kommo/42", "acme-kommo",
                      "lead/7", "7", 2000);
        struct eb_replay_record c =
                mkrec("kota.employee.created", NULL, NULL, NULL, NULL, -1);

        EB_CHECK(eb_replay_filter_empty(f));
        EB_CHECK(eb_replay_filter_match(f, &a));
        EB_CHECK(eb_replay_filter_match(f, &c));
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_TYPE, ""), -EINVAL);
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_COUNT_, "x"), -EINVAL);
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_TYPE, "*.lead.*"), 0);
        EB_CHECK(!eb_replay_filter_empty(f));
        EB_CHECK(eb_replay_filter_match(f, &a));
        EB_CHECK(eb_replay_filter_match(f, &b));
        EB_CHECK(!eb_replay_filter_match(f, &c));
        /* source matches the attribute or the source name */
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_SOURCE, "acme-close"),
                     0);
        EB_CHECK(eb_replay_filter_match(f, &a));
        EB_CHECK(!eb_replay_filter_match(f, &b));
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_SOURCE, "/kommo/*"),
                     0);
        EB_CHECK(eb_replay_filter_match(f, &b)); /* alternatives */
        eb_replay_filter_free(f);

        f = eb_replay_filter_new();
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_ENTITY, "l1"), 0);
        EB_CHECK(eb_replay_filter_match(f, &a));
        EB_CHECK(!eb_replay_filter_match(f, &b));
        EB_CHECK(!eb_replay_filter_match(f, &c)); /* no entity id */
        eb_replay_filter_free(f);

        f = eb_replay_filter_new();
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_SUBJECT, "lead/?"), 0);
        EB_CHECK(!eb_replay_filter_match(f, &a)); /* "lead/l1" is 2 chars */
        EB_CHECK(eb_replay_filter_match(f, &b));
        EB_CHECK_INT(eb_replay_filter_add(f, EB_REPLAY_F_ID, "e[uv]"), 0);
        EB_CHECK(eb_replay_filter_match(f, &b));
        eb_replay_filter_free(f);

        f = eb_replay_filter_new();
        eb_replay_filter_set_time(f, 1000, 2000); /* [1000, 2000) */
        EB_CHECK(!eb_replay_filter_empty(f));
        EB_CHECK(eb_replay_filter_match(f, &a));
        EB_CHECK(!eb_replay_filter_match(f, &b));
        EB_CHECK(!eb_replay_filter_match(f, &c)); /* no time */
        eb_replay_filter_set_time(f, INT64_MIN, 1000);
        EB_CHECK(!eb_replay_filter_match(f, &a));
        eb_replay_filter_free(f);
        eb_replay_filter_free(NULL);
}

static void test_http_decisions(void)
{
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 200),
                     EB_REPLAY_HTTP_DONE);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 204),
                     EB_REPLAY_HTTP_DONE);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 500),
                     EB_REPLAY_HTTP_RETRY);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 503),
                     EB_REPLAY_HTTP_RETRY);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 429),
                     EB_REPLAY_HTTP_RETRY);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 408),
                     EB_REPLAY_HTTP_RETRY);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 400),
                     EB_REPLAY_HTTP_FAIL);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_OK, 301),
                     EB_REPLAY_HTTP_FAIL);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_TRANSIENT, 0),
                     EB_REPLAY_HTTP_RETRY);
        EB_CHECK_INT(eb_replay_http_verdict(EB_REPLAY_NET_FATAL, 0),
                     EB_REPLAY_HTTP_FAIL);

        EB_CHECK_INT(eb_replay_backoff_ms(1, 500, 30000), 500);
        EB_CHECK_INT(eb_replay_backoff_ms(2, 500, 30000), 1000);
        EB_CHECK_INT(eb_replay_backoff_ms(4, 500, 30000), 4000);
        EB_CHECK_INT(eb_replay_backoff_ms(20, 500, 30000), 30000);
        EB_CHECK_INT(eb_replay_backoff_ms(1000, 500, 30000), 30000);
        EB_CHECK_INT(eb_replay_backoff_ms(3, 0, 30000), 0);

        EB_CHECK_INT(eb_replay_retry_after_ms("3"), 3000);
        EB_CHECK_INT(eb_replay_retry_after_ms(" 12\r\n"), 12000);
        EB_CHECK_INT(eb_replay_retry_after_ms("Wed, 21 Oct 2015 07:28:00 GMT"),
                     -1);
        EB_CHECK_INT(eb_replay_retry_after_ms("-1"), -1);
        EB_CHECK_INT(eb_replay_retry_after_ms(NULL), -1);
}

static void test_from_header(void)
{
        char buf[300], topic[250];
        int32_t part = -1;
        int64_t off = -1;

        EB_CHECK_INT(eb_replay_from_header_format(buf, sizeof(buf),
                                                  "crm.close.lead.updated", 2,
                                                  1234),
                     0);
        EB_CHECK_STR(buf, "crm.close.lead.updated/2/1234");
        EB_CHECK_INT(eb_replay_from_header_parse(buf, strlen(buf), topic,
                                                 sizeof(topic), &part, &off),
                     0);
        EB_CHECK_STR(topic, "crm.close.lead.updated");
        EB_CHECK_INT(part, 2);
        EB_CHECK_INT(off, 1234);
        EB_CHECK_INT(eb_replay_from_header_format(buf, 8, "crm.close", 2, 1),
                     -ENOSPC);
        EB_CHECK_INT(eb_replay_from_header_parse("t/1", 3, topic, sizeof(topic),
                                                 &part, &off),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_from_header_parse("t/x/1", 5, topic,
                                                 sizeof(topic), &part, &off),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_from_header_parse("/1/1", 4, topic,
                                                 sizeof(topic), &part, &off),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_from_header_parse("t/1/1/", 6, topic,
                                                 sizeof(topic), &part, &off),
                     -EINVAL);
        EB_CHECK_INT(eb_replay_from_header_parse("t/1/", 4, topic,
                                                 sizeof(topic), &part, &off),
                     -EINVAL);
        EB_CHECK_INT(
                eb_replay_from_header_parse("t/1/5", 5, topic, 1, &part, &off),
                -EINVAL); /* no room for the topic */
}

/* A fake partition: data records at some offsets, markers elsewhere. */
struct fake {
        const int64_t *offs; /* data record offsets, ascending */
        const int64_t *ts;
        size_t n;
        int probes;
};

static int fake_probe(void *opaque, int64_t off, int64_t *rec_off,
                      int64_t *ts_ms)
{
        struct fake *f = opaque;
        size_t i;

        f->probes++;
        for (i = 0; i < f->n; i++)
                if (f->offs[i] >= off) {
                        *rec_off = f->offs[i];
                        *ts_ms = f->ts[i];
                        return 0;
                }
        return 1;
}

static int fake_count(void *opaque, int64_t a, int64_t b, int64_t *count)
{
        struct fake *f = opaque;
        size_t i;

        f->probes++;
        *count = 0;
        for (i = 0; i < f->n; i++)
                if (f->offs[i] >= a && f->offs[i] < b)
                        (*count)++;
        return 0;
}

static int fail_probe(void *opaque, int64_t off, int64_t *rec_off,
                      int64_t *ts_ms)
{
        (void)opaque;
        (void)off;
        (void)rec_off;
        (void)ts_ms;
        return -ETIMEDOUT;
}

static void test_time_search(void)
{
        /* Offsets 0..19 with markers at 3, 7, 8 and 19 (the end). */
        static const int64_t offs[] = {0,  1,  2,  4,  5,  6,  9,  10,
                                       11, 12, 13, 14, 15, 16, 17, 18};
        static const int64_t ts[] = {100, 110, 120, 130, 140, 150, 160, 170,
                                     180, 190, 200, 210, 220, 230, 240, 250};
        struct fake f = {offs, ts, 16, 0};
        int64_t got = -1;
        size_t i;

        for (i = 0; i < 16; i++) {
                EB_CHECK_INT(eb_replay_time_search(0, 20, ts[i], fake_probe, &f,
                                                   &got),
                             0);
                EB_CHECK_INT(got, offs[i]);
                /* Between two timestamps: the later record. */
                EB_CHECK_INT(eb_replay_time_search(0, 20, ts[i] - 5, fake_probe,
                                                   &f, &got),
                             0);
                EB_CHECK_INT(got, offs[i]);
        }
        EB_CHECK_INT(eb_replay_time_search(0, 20, 0, fake_probe, &f, &got), 0);
        EB_CHECK_INT(got, 0);
        EB_CHECK_INT(eb_replay_time_search(0, 20, 999, fake_probe, &f, &got),
                     0);
        EB_CHECK_INT(got, 20); /* none: the end */
        EB_CHECK_INT(eb_replay_time_search(5, 5, 0, fake_probe, &f, &got), 0);
        EB_CHECK_INT(got, 5); /* empty range */
        /* Start the search past the log start (retention). */
        EB_CHECK_INT(eb_replay_time_search(9, 20, 100, fake_probe, &f, &got),
                     0);
        EB_CHECK_INT(got, 9);
        /* A logarithmic number of probes. */
        f.probes = 0;
        EB_CHECK_INT(eb_replay_time_search(0, 20, 185, fake_probe, &f, &got),
                     0);
        EB_CHECK_INT(got, 12);
        EB_CHECK(f.probes <= 7);
        EB_CHECK_INT(eb_replay_time_search(0, 20, 1, fail_probe, NULL, &got),
                     -ETIMEDOUT);
}

static void test_tail_start(void)
{
        static const int64_t offs[] = {0,  1,  2,  4,  5,  6,  9,  10,
                                       11, 12, 13, 14, 15, 16, 17, 18};
        static const int64_t ts[16];
        /* Every other offset is a marker (one event per transaction). */
        static const int64_t sparse[] = {0, 2, 4, 6, 8, 10, 12, 14};
        struct fake f = {offs, ts, 16, 0};
        struct fake g = {sparse, ts, 8, 0};
        int64_t start = -1, n;

        EB_CHECK_INT(eb_replay_tail_start(0, 20, 1, fake_count, &f, &start), 0);
        EB_CHECK_INT(start, 18);
        EB_CHECK_INT(eb_replay_tail_start(0, 20, 3, fake_count, &f, &start), 0);
        EB_CHECK_INT(start, 16);
        EB_CHECK_INT(eb_replay_tail_start(0, 20, 10, fake_count, &f, &start),
                     0);
        EB_CHECK_INT(start, 9);
        /* Crossing the markers at 7 and 8: the last 12 records start at 5,
         * not at 20 - 12 = 8. */
        EB_CHECK_INT(eb_replay_tail_start(0, 20, 12, fake_count, &f, &start),
                     0);
        EB_CHECK_INT(fake_count(&f, start, 20, &n), 0);
        EB_CHECK_INT(n, 12);
        EB_CHECK_INT(start, 5);
        EB_CHECK_INT(eb_replay_tail_start(0, 20, 16, fake_count, &f, &start),
                     0);
        EB_CHECK_INT(start, 0);
        EB_CHECK_INT(eb_replay_tail_start(0, 20, 100, fake_count, &f, &start),
                     0);
        EB_CHECK_INT(start, 0); /* fewer than asked: from the start */
        EB_CHECK_INT(eb_replay_tail_start(4, 20, 100, fake_count, &f, &start),
                     0);
        EB_CHECK_INT(start, 4);
        EB_CHECK_INT(eb_replay_tail_start(0, 15, 3, fake_count, &g, &start), 0);
        EB_CHECK_INT(fake_count(&g, start, 15, &n), 0);
        EB_CHECK_INT(n, 3);
        EB_CHECK(start == 9 || start == 10);
        EB_CHECK_INT(eb_replay_tail_start(7, 7, 3, fake_count, &g, &start), 0);
        EB_CHECK_INT(start, 7);
}

int main(void)
{
        EB_RUN(test_pos_forms);
        EB_RUN(test_pos_errors);
        EB_RUN(test_ppos);
        EB_RUN(test_partitions);
        EB_RUN(test_topic_specs);
        EB_RUN(test_rate);
        EB_RUN(test_record_structured);
        EB_RUN(test_record_structured_multiline);
        EB_RUN(test_record_not_envelope);
        EB_RUN(test_record_binary);
        EB_RUN(test_record_binary_odd);
        EB_RUN(test_filter);
        EB_RUN(test_http_decisions);
        EB_RUN(test_from_header);
        EB_RUN(test_time_search);
        EB_RUN(test_tail_start);
        return eb_test_summary();
}
