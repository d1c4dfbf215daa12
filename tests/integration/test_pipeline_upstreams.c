/*
 * The pipeline and what real upstreams send (issue 17), on the embedded
 * cluster:
 *
 * - Close withholds data and previous_data from a non-admin key once an
 *   event is an hour old (the strict simulator does the same). The
 *   adapter marks such a version stripped; the pipeline never lets it
 *   shadow the full one: an empty version after the full one is a
 *   duplicate, a full version after an empty one is still published.
 * - A poison event larger than a Kafka message may be still reaches the
 *   dead-letter topic, as an excerpt, instead of failing its page forever.
 */
#include "eb_config.h"
#include "eb_kafka.h"
#include "eb_pipeline.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tloop.h"

#include <event2/event.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static struct event_base *base;

/* A Close event as the list API returns it, with or without its data. */
static json_t *close_event(const char *id, const char *action, int stripped)
{
        return json_pack(
                "{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:[s], s:o, s:o}", "id",
                id, "date_created", "2026-11-14T22:09:58.395000",
                "date_updated", "2026-11-14T22:09:58.395000", "organization_id",
                "orga_1", "object_type", "opportunity", "object_id", "oppo_1",
                "action", action, "changed_fields", "status_id", "data",
                stripped ? json_null()
                         : json_pack("{s:s, s:i}", "id", "oppo_1", "confidence",
                                     100),
                "previous_data",
                stripped ? json_null() : json_pack("{s:i}", "confidence", 70));
}

static struct eb_event *normalize(const struct eb_source_cfg *src,
                                  const char *id, const char *action,
                                  int stripped)
{
        json_t *native = close_event(id, action, stripped);
        char err[256];
        struct eb_event *evt =
                eb_provider_close.normalize(src, native, err, sizeof(err));

        json_decref(native);
        return evt;
}

static int publish(eb_pipeline_t *pl, const struct eb_source_cfg *src,
                   struct eb_event *evt)
{
        struct eb_event **evts = calloc(1, sizeof(*evts));
        struct eb_tresult r = {0, 0};

        evts[0] = evt;
        if (eb_pipeline_publish(pl, src, evts, 1, NULL, eb_tresult_done, &r))
                return -1;
        eb_tresult_wait(base, &r, 10000);
        return r.done == 1 ? r.err : -1;
}

static void test_detected(void)
{
        struct eb_source_cfg src = {0};
        struct eb_event *full, *empty, *deleted;

        src.name = (char *)"acme-close";
        full = normalize(&src, "ev_1", "updated", 0);
        empty = normalize(&src, "ev_1", "updated", 1);
        deleted = normalize(&src, "ev_2", "deleted", 1);
        EB_REQUIRE(full && empty && deleted);
        EB_CHECK_INT(full->stripped, 0);
        EB_CHECK_INT(empty->stripped, 1);
        EB_CHECK(json_is_true(json_object_get(empty->fields, "data_stripped")));
        EB_CHECK(json_object_get(full->fields, "data_stripped") == NULL);
        /* a delete has null data of its own; both null is still "stripped"
         * only for other actions */
        EB_CHECK_INT(deleted->stripped, 0);
        eb_event_free(full);
        eb_event_free(empty);
        eb_event_free(deleted);
}

/* A pipeline on the embedded cluster, and the source acme-close. */
struct rig {
        struct eb_config *cfg;
        struct eb_source_cfg src;
        eb_kafka_t *k;
        eb_pipeline_t *pl;
};

static int rig_start(struct rig *r)
{
        char err[256];

        memset(r, 0, sizeof(*r));
        r->cfg = eb_config_new_default();
        r->cfg->dedupe_capacity = 1000;
        r->src.name = (char *)"acme-close";
        r->k = eb_kafka_new(base, r->cfg, err, sizeof(err));
        if (r->k)
                r->pl = eb_pipeline_new(base, r->cfg, r->k, err, sizeof(err));
        if (!r->pl)
                fprintf(stderr, "  pipeline: %s\n", err);
        return r->pl ? 0 : -1;
}

static void rig_stop(struct rig *r)
{
        eb_kafka_free(r->k);
        eb_pipeline_free(r->pl);
        eb_config_free(r->cfg);
}

static void test_never_shadows(void)
{
        struct rig r;
        const struct eb_pipeline_stats *st;
        eb_pipeline_t *pl;
        const struct eb_source_cfg *src = &r.src;

        EB_REQUIRE(rig_start(&r) == 0);
        pl = r.pl;

        /* Full first (a live poll), then empty (a re-read an hour later):
         * the empty one is a duplicate. */
        EB_CHECK_INT(publish(pl, src, normalize(src, "ev_1", "updated", 0)), 0);
        EB_CHECK_INT(publish(pl, src, normalize(src, "ev_1", "updated", 1)), 0);
        st = eb_pipeline_stats(pl, "acme-close");
        EB_CHECK_INT(st->published, 1);
        EB_CHECK_INT(st->duplicates, 1);
        EB_CHECK_INT(st->stripped, 0);

        /* Empty first (a backfill of old events), then the full version
         * (a webhook retry): both go out; the full one is not taken for a
         * duplicate of the empty one. */
        EB_CHECK_INT(publish(pl, src, normalize(src, "ev_2", "updated", 1)), 0);
        EB_CHECK_INT(publish(pl, src, normalize(src, "ev_2", "updated", 0)), 0);
        st = eb_pipeline_stats(pl, "acme-close");
        EB_CHECK_INT(st->published, 3);
        EB_CHECK_INT(st->stripped, 1);
        /* ... and the empty one again is a duplicate. */
        EB_CHECK_INT(publish(pl, src, normalize(src, "ev_2", "updated", 1)), 0);
        st = eb_pipeline_stats(pl, "acme-close");
        EB_CHECK_INT(st->published, 3);
        EB_CHECK_INT(st->duplicates, 2);

        rig_stop(&r);
}

/* A 1.5 MB poison event: its dead-letter record carries an excerpt, so it
 * fits in a Kafka message (1 MB by default) and the publish succeeds. */
static void test_huge_poison_excerpt(void)
{
        struct rig r;
        const struct eb_pipeline_stats *st;
        const struct eb_source_cfg *src = &r.src;
        eb_pipeline_t *pl;
        char *big;
        json_t *native;
        size_t n = 1500 * 1024;

        EB_REQUIRE(rig_start(&r) == 0);
        pl = r.pl;
        big = malloc(n + 1);
        memset(big, 'x', n);
        big[n] = '\0';
        native = json_pack("{s:s}", "id", big);
        free(big);
        EB_CHECK_INT(publish(pl, src,
                             eb_deadletter_event(src, "close", native,
                                                 "event: invalid \"id\"",
                                                 "page 1, data[0]")),
                     0);
        json_decref(native);
        st = eb_pipeline_stats(pl, "acme-close");
        EB_CHECK_INT(st->published, 1);
        EB_CHECK_INT(st->deadlettered, 1);
        rig_stop(&r);
}

int main(void)
{
        eb_log_set_level(EB_LOG_ERROR);
        base = event_base_new();
        EB_RUN(test_detected);
        EB_RUN(test_never_shadows);
        EB_RUN(test_huge_poison_excerpt);
        event_base_free(base);
        eb_log_shutdown();
        return eb_test_summary();
}
