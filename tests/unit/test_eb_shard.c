/* Unit tests for eb_shard's pure parts: the shard of a source (stable
 * across versions: changing it would move every source to another shard
 * and lose its dedupe ids) and the intake record format. */
#include "eb_event.h"
#include "eb_shard.h"
#include "eb_test.h"

#include <errno.h>
#include <string.h>

static void test_shard_of_is_pinned(void)
{
        /* FNV-1a 64 of the name, modulo the shard count. */
        EB_CHECK_INT(eb_shard_of("close-1", 8), 1);
        EB_CHECK_INT(eb_shard_of("kommo-2", 8), 5);
        EB_CHECK_INT(eb_shard_of("kota-3", 8), 4);
        EB_CHECK_INT(eb_shard_of("acme-close", 12), 10);
        EB_CHECK_INT(eb_shard_of("kota-3", 12), 8);
        EB_CHECK_INT(eb_shard_of("anything", 1), 0);
        EB_CHECK_INT(eb_shard_of("anything", 0), 0);
}

static void test_shard_of_spreads(void)
{
        int hits[16] = {0}, i, min = 1 << 30, max = 0;
        char name[32];

        for (i = 0; i < 1600; i++) {
                snprintf(name, sizeof(name), "account-%d", i);
                hits[eb_shard_of(name, 16)]++;
        }
        for (i = 0; i < 16; i++) {
                min = hits[i] < min ? hits[i] : min;
                max = hits[i] > max ? hits[i] : max;
        }
        /* 100 per shard on average; a hash this size stays within 2x. */
        EB_CHECK(min >= 50);
        EB_CHECK(max <= 200);
}

static struct eb_event *sample(void)
{
        struct eb_event *e = eb_event_new();

        e->id = strdup("ev_1");
        e->source_name = strdup("close-1");
        e->provider = strdup("close");
        e->account = strdup("orga_1");
        e->entity_type = strdup("lead");
        e->entity_id = strdup("lead_9");
        e->action = strdup("updated");
        e->version = strdup("2026-11-22T10:00:00.5Z");
        e->time_ms = 1795000000123;
        e->fields = json_pack("{s:s}", "name", "Acme \"quoted\" \xc3\xa9");
        e->native = json_pack("{s:s,s:i}", "id", "ev_1", "n", 7);
        return e;
}

static void test_intake_round_trip(void)
{
        struct eb_event *e = sample(), *d = NULL;
        char *src = NULL, *rec;
        size_t len = 0;
        int trig = -1;

        rec = eb_intake_encode(e, &len);
        EB_REQUIRE(rec != NULL);
        EB_CHECK(len == strlen(rec));
        EB_CHECK_INT(eb_intake_decode(rec, len, &src, &d, &trig), 0);
        EB_REQUIRE(d != NULL);
        EB_CHECK_STR(src, "close-1");
        EB_CHECK_INT(trig, 0);
        EB_CHECK_STR(d->id, "ev_1");
        EB_CHECK_STR(d->provider, "close");
        EB_CHECK_STR(d->account, "orga_1");
        EB_CHECK_STR(d->entity_type, "lead");
        EB_CHECK_STR(d->entity_id, "lead_9");
        EB_CHECK_STR(d->action, "updated");
        EB_CHECK(d->actor == NULL);
        EB_CHECK_STR(d->version, "2026-11-22T10:00:00.5Z");
        EB_CHECK(d->time_ms == 1795000000123);
        EB_CHECK(json_equal(d->fields, e->fields));
        EB_CHECK(json_equal(d->native, e->native));
        {
                /* the same dedupe identity, so a poll of it is a duplicate */
                size_t l1, l2;
                char *k1 = eb_event_dedupe_key(e, &l1);
                char *k2 = eb_event_dedupe_key(d, &l2);
                EB_CHECK(l1 == l2 && !memcmp(k1, k2, l1));
                free(k1);
                free(k2);
        }
        free(rec);
        free(src);
        eb_event_free(d);
        eb_event_free(e);
}

static void test_intake_rejects(void)
{
        static const char *const bad[] = {
                "",
                "not json",
                "[]",
                "{\"v\":2,\"source\":\"s\",\"trigger\":true}",
                "{\"v\":1,\"trigger\":true}",
                "{\"v\":1,\"source\":\"s\"}",
                "{\"v\":1,\"source\":\"s\",\"event\":{\"id\":\"x\"}}",
                /* the event's source is not the record's */
                "{\"v\":1,\"source\":\"s\",\"event\":{\"id\":\"x\","
                "\"source\":\"t\",\"provider\":\"close\",\"entity_type\":"
                "\"lead\",\"action\":\"created\",\"time_ms\":1,"
                "\"native\":{}}}",
                /* mistyped */
                "{\"v\":1,\"source\":\"s\",\"event\":{\"id\":7,"
                "\"source\":\"s\",\"provider\":\"close\",\"entity_type\":"
                "\"lead\",\"action\":\"created\",\"time_ms\":1,"
                "\"native\":{}}}",
                "{\"v\":1,\"source\":\"s\",\"event\":{\"id\":\"x\","
                "\"source\":\"s\",\"provider\":\"close\",\"entity_type\":"
                "\"lead\",\"action\":\"created\",\"time_ms\":\"1\","
                "\"native\":{}}}",
                NULL,
        };
        struct eb_event *d;
        char *src;
        int i, trig;

        for (i = 0; bad[i]; i++) {
                d = NULL;
                src = NULL;
                EB_CHECK_INT(eb_intake_decode(bad[i], strlen(bad[i]), &src, &d,
                                              &trig),
                             -EINVAL);
                EB_CHECK(d == NULL && src == NULL);
        }
        /* a good trigger record */
        d = NULL;
        src = NULL;
        trig = 0;
        EB_CHECK_INT(eb_intake_decode("{\"v\":1,\"source\":\"kommo-1\","
                                      "\"trigger\":true}",
                                      41, &src, &d, &trig),
                     0);
        EB_CHECK_INT(trig, 1);
        EB_CHECK_STR(src, "kommo-1");
        EB_CHECK(d == NULL);
        free(src);
}

int main(void)
{
        EB_RUN(test_shard_of_is_pinned);
        EB_RUN(test_shard_of_spreads);
        EB_RUN(test_intake_round_trip);
        EB_RUN(test_intake_rejects);
        return eb_test_summary();
}
