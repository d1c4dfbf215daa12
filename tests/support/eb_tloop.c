#include "eb_tloop.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eb_event.h"
#include "eb_kmock.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_util.h"
#include "sim_harness.h"

void eb_tresult_done(void *arg, int err)
{
        struct eb_tresult *r = arg;

        r->done++;
        r->err = err;
}

void eb_tresult_wait(struct event_base *base, struct eb_tresult *r, int ms)
{
        int64_t until = eb_mono_ms() + EB_T_TMOUT(ms);

        while (!r->done && eb_mono_ms() < until)
                event_base_loop(base, EVLOOP_ONCE | EVLOOP_NONBLOCK);
}

void eb_trun_for(struct event_base *base, int ms)
{
        struct timeval tv = {ms / 1000, (ms % 1000) * 1000};

        event_base_loopexit(base, &tv);
        event_base_dispatch(base);
}

struct pending {
        eb_publish_done_cb *done;
        void *arg;
        int err;
        struct event *ev;
};

static void settle(evutil_socket_t fd, short what, void *arg)
{
        struct pending *pd = arg;

        (void)fd;
        (void)what;
        pd->done(pd->arg, pd->err);
        event_free(pd->ev);
        free(pd);
}

void eb_tsettle_later(struct event_base *base, eb_publish_done_cb *done,
                      void *arg, int err)
{
        struct pending *pd = eb_xcalloc(1, sizeof(*pd));
        struct timeval tv = {0, 1000};

        pd->done = done;
        pd->arg = arg;
        pd->err = err;
        pd->ev = evtimer_new(base, settle, pd);
        evtimer_add(pd->ev, &tv);
}

void eb_tjson_bump(json_t *obj, const char *key)
{
        json_t *n = json_object_get(obj, key);

        json_object_set_new(obj, key,
                            json_integer(n ? json_integer_value(n) + 1 : 1));
}

struct eb_event **eb_tone_event(const char *id, int64_t time_ms)
{
        struct eb_event **evts = eb_xcalloc(1, sizeof(*evts));
        struct eb_event *e = eb_event_new();

        e->id = eb_xstrdup(id);
        e->source_name = eb_xstrdup("acme");
        e->provider = eb_xstrdup("kota");
        e->account = eb_xstrdup("pt_1");
        e->entity_type = eb_xstrdup("employee");
        e->entity_id = eb_xstrdup("ee_1");
        e->action = eb_xstrdup("created");
        e->time_ms = time_ms;
        e->native = json_pack("{s:s}", "id", id);
        evts[0] = e;
        return evts;
}

int eb_tcommitted_events(const char *bootstrap, const char *topic,
                         const char *id)
{
        const char *const topics[] = {topic, NULL};
        struct eb_kmock_records recs;
        char *needle = eb_xasprintf("\"%s\"", id);
        int n = 0;
        size_t i;

        if (eb_kmock_consume_all(bootstrap, topics, EB_T_TMOUT(20000), &recs) !=
            0)
                n = -1;
        for (i = 0; n >= 0 && i < recs.cnt; i++)
                if (recs.v[i].value && strstr(recs.v[i].value, needle))
                        n++;
        eb_kmock_records_free(&recs);
        free(needle);
        return n;
}

int eb_tmissing(const struct eb_sim *sim, const char *query, json_t *seen,
                int versioned, int (*want)(const json_t *native))
{
        json_t *truth = eb_sim_truth(sim, query);
        size_t i;
        int miss = 0;

        if (!truth)
                return -1;
        for (i = 0; i < json_array_size(truth); i++) {
                json_t *t = json_array_get(truth, i);
                const char *ver =
                        json_string_value(json_object_get(t, "version"));
                char key[512];

                if (versioned && json_is_true(json_object_get(t, "superseded")))
                        continue;
                if (want && !want(json_object_get(t, "native")))
                        continue;
                snprintf(key, sizeof(key), "%s\x1f%s\x1f%s",
                         json_string_value(json_object_get(t, "account")),
                         json_string_value(json_object_get(t, "id")),
                         versioned && ver ? ver : "");
                if (!json_object_get(seen, key))
                        miss++;
        }
        json_decref(truth);
        return miss;
}

int eb_trig_sim(struct eb_trig *r, const char *const *args)
{
        memset(r, 0, sizeof(*r));
        return eb_sim_start(args, &r->sim) < 0 ? -1 : 0;
}

const struct eb_poller_opts eb_trig_fast = {.backoff_min_ms = 50,
                                            .backoff_max_ms = 200};

int eb_trig_poll(struct eb_trig *r, struct event_base *base, const char *json,
                 const struct eb_sink *sink, const struct eb_poller_opts *opts)
{
        char err[512];
        size_t i;

        r->cfg = eb_config_load_string(json, err, sizeof(err));
        if (!r->cfg) {
                fprintf(stderr, "config: %s\n", err);
                return -1;
        }
        r->http = eb_http_new(base, err, sizeof(err));
        r->p = eb_poller_new(base, r->http, sink, opts);
        for (i = 0; i < r->cfg->sources_cnt; i++)
                if (eb_poller_add(r->p, &r->cfg->sources[i], NULL, err,
                                  sizeof(err)) < 0) {
                        fprintf(stderr, "add: %s\n", err);
                        return -1;
                }
        return 0;
}

void eb_trig_stop(struct eb_trig *r, struct event_base *base)
{
        if (r->p) {
                eb_poller_stop(r->p);
                eb_trun_for(base, 300);
                eb_poller_free(r->p);
        }
        eb_http_free(r->http);
        eb_config_free(r->cfg);
        EB_CHECK(eb_sim_stop(&r->sim) == 0);
}
