#include "eb_app.h"

#include <errno.h>
#include <event2/event.h>
#include <event2/http.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "eb_http.h"
#include "eb_httpd.h"
#include "eb_instance.h"
#include "eb_kafka.h"
#include "eb_metrics_collect.h"
#include "eb_pipeline.h"
#include "eb_poller.h"
#include "eb_provider.h"
#include "eb_shard.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_unit.h"
#include "eb_util.h"
#include "eb_webhook.h"

#define EB_APP_DRAIN_TICK_MS 50
/* After the drain, how long answered webhooks may take to reach their
 * sockets before the loop stops and the listener is freed. */
#define EB_APP_HTTP_FLUSH_MS 1000

/* Start-up against real brokers (on_gate_tick below): how long one probe
 * waits for the cluster's metadata, how often the loop looks at the
 * probe, and the retry backoff (doubling). */
#define EB_APP_PROBE_METADATA_MS 3000
#define EB_APP_PROBE_TOPICS_MS   5000
#define EB_APP_GATE_TICK_MS      100
#define EB_APP_GATE_BACKOFF_MS   1000
#define EB_APP_GATE_BACKOFF_MAX  30000

/*
 * The start-up probe: one helper thread at a time makes the blocking
 * librdkafka calls (metadata, and in exactly-once mode the state topics'
 * check and creation) while the loop runs, so /healthz answers, /readyz
 * says why it is not ready and librdkafka's error events (served on the
 * loop) are logged as they happen. The thread touches nothing of the
 * application but what is under mu.
 */
struct kafka_probe {
        pthread_t thread;
        int started; /* loop thread only */
        rd_kafka_t *rk;
        const struct eb_config *cfg;
        pthread_mutex_t mu;
        int done;          /* under mu */
        int rc;            /* under mu: 0, or a negative errno */
        char errstr[2048]; /* under mu */
};

struct eb_app_s {
        struct event_base *base;
        struct eb_config *cfg;      /* current */
        struct eb_config *boot_cfg; /* the start-up one: see "retired" */
        eb_kafka_t *kafka;
        eb_http_t *http;
        eb_pipeline_t *pipeline;
        eb_poller_t *poller;
        struct event *sig_term, *sig_int, *sig_hup;
        struct event *drain_timer;
        int64_t drain_deadline_ms;
        int draining;
        int exit_code;
        /* metrics: the registry /metrics renders, and what the
         * application's collectors read (eb_metrics_collect) */
        eb_metrics_t *metrics;
        struct eb_metrics_app metrics_src;
        /* HTTP listener and webhook intake (eb_httpd, eb_webhook) */
        eb_httpd_t *httpd;
        eb_webhook_t *webhook;
        int kafka_fatal; /* the producer reported a fatal error */
        int drained;     /* drain over: webhooks answered, no accept */
        int64_t flush_deadline_ms;
        /* Configurations replaced by SIGHUP reloads. boot_cfg is kept until
         * eb_app_free(): the producer, pipeline, listener, shards, probe
         * and instance guard borrow it (their settings need a restart).
         * Any later one replaced is kept here only while something still
         * borrows it (retired_borrowed(): a source the poller runs or
         * settles, a held webhook, a publish in flight), then freed by
         * retire_sweep(), run at each reload and every second while the
         * list is not empty. */
        struct eb_config **retired;
        size_t nretired;
        struct event *retire_timer;
        uint64_t reloads, reload_failures;
        /* Exactly-once: sources start and the process reports ready only
         * once eb_kafka_txn_init() and the state restore are done. */
        int eos;
        int restored;
        /* Sharded (scale.shards > 0): shards own producers and pipelines;
         * app->kafka and app->pipeline stay NULL. */
        eb_shards_t *shards;
        /* Real brokers: nothing starts until the cluster answered. */
        struct kafka_probe probe;
        struct event *gate_timer;
        int kafka_ok;          /* the probe succeeded once */
        int64_t gate_retry_ms; /* when the next probe may start (mono) */
        int gate_backoff_ms;
        int gate_attempts;
        char gate_why[1024];    /* what /readyz says until kafka_ok */
        char ready_detail[768]; /* what a ready /readyz adds */
        /* Exactly-once: a restore that failed is tried again (a READ
         * permission granted, a leader back); ids it already loaded are
         * loaded again as no-ops (eb_dedupe_insert). */
        struct event *restore_timer;
        int restore_attempts;
        int restore_backoff_ms;
        char gate_logged[1024]; /* the last reason logged */
        /* Exactly-once on a real cluster, unsharded: one active instance
         * per transactional.id (a standby waits, not ready). */
        eb_instance_t *guard;
};

static void on_drain_tick(evutil_socket_t fd, short what, void *arg)
{
        eb_app_t *app = arg;
        struct timeval tv = {0, EB_APP_DRAIN_TICK_MS * 1000};
        int idle =
                eb_poller_idle(app->poller) &&
                (!app->pipeline || eb_pipeline_pending(app->pipeline) == 0) &&
                (!app->shards || eb_shards_idle(app->shards));
        int64_t now = eb_mono_ms();

        (void)fd;
        (void)what;
        if (!app->drained) {
                if (!idle && now < app->drain_deadline_ms) {
                        evtimer_add(app->drain_timer, &tv);
                        return;
                }
                if (!idle)
                        eb_warn("app",
                                "drain timeout: %d publish(es) still pending; "
                                "their pages will be fetched again on the "
                                "next start",
                                app->pipeline
                                        ? eb_pipeline_pending(app->pipeline)
                                        : -1);
                app->drained = 1;
                /* Webhooks still held (their events are not in Kafka yet)
                 * get 503 now, inside the loop, so the replies can reach
                 * their sockets; no new connection is accepted. */
                if (app->httpd) {
                        eb_webhook_shutdown(app->webhook);
                        eb_httpd_stop(app->httpd);
                        app->flush_deadline_ms = now + EB_APP_HTTP_FLUSH_MS;
                }
        }
        if (app->httpd && eb_httpd_unsent(app->httpd) > 0 &&
            now < app->flush_deadline_ms) {
                evtimer_add(app->drain_timer, &tv);
                return;
        }
        event_base_loopbreak(app->base);
}

void eb_app_shutdown(eb_app_t *app, const char *reason, int fatal)
{
        struct timeval tv = {0, 0};

        if (fatal)
                app->exit_code = 1;
        if (app->draining)
                return;
        app->draining = 1;
        eb_info("app", "shutting down: %s (drain up to %lldms)", reason,
                (long long)app->cfg->drain_timeout_ms);
        eb_poller_stop(app->poller);
        if (app->shards)
                eb_shards_stop(app->shards);
        app->drain_deadline_ms = eb_mono_ms() + app->cfg->drain_timeout_ms;
        evtimer_add(app->drain_timer, &tv);
}

/* One source's reload (eb_config_diff_sources()). Added sources start
 * from the checkpoint this process committed for them, if any; changed
 * ones restart from where they were. Dedupe state is untouched, so nothing
 * is published twice. */
struct app_reload {
        eb_app_t *app;
        struct eb_reload_tally *tally;
};

static void reload_source(const struct eb_source_cfg *o,
                          const struct eb_source_cfg *n, void *opaque)
{
        struct app_reload *r = opaque;
        char errstr[512];

        (void)eb_poller_replace(
                r->app->poller, o, n,
                n ? eb_pipeline_checkpoint(r->app->pipeline, n->name) : NULL,
                r->tally, errstr, sizeof(errstr));
}

static int str_differs(const char *a, const char *b)
{
        if (!a || !b)
                return a != b;
        return strcmp(a, b) != 0;
}

/* Settings that need a restart: say so instead of half-applying them. */
static void warn_restart_only(const struct eb_config *o,
                              const struct eb_config *n)
{
        size_t i;
        int props = o->properties_cnt != n->properties_cnt;

        for (i = 0; !props && i < o->properties_cnt; i++)
                props = str_differs(o->properties[i].key,
                                    n->properties[i].key) ||
                        str_differs(o->properties[i].value,
                                    n->properties[i].value);
        if (str_differs(o->brokers, n->brokers) || props ||
            o->delivery != n->delivery ||
            str_differs(o->transactional_id, n->transactional_id) ||
            str_differs(o->state_prefix, n->state_prefix) ||
            o->scale_shards != n->scale_shards)
                eb_warn("app", "reload: kafka connection settings changed; "
                               "they take effect after a restart");
        if (str_differs(o->topic_prefix, n->topic_prefix) ||
            str_differs(o->topic_template, n->topic_template) ||
            o->envelope_binary != n->envelope_binary)
                eb_warn("app", "reload: topic or envelope settings changed; "
                               "they take effect after a restart");
        if (str_differs(o->listen, n->listen) ||
            o->http_max_body != n->http_max_body ||
            o->http_max_held != n->http_max_held)
                eb_warn("app", "reload: http settings changed; they take "
                               "effect after a restart");
        if (o->dedupe_window_ms != n->dedupe_window_ms ||
            o->dedupe_capacity != n->dedupe_capacity)
                eb_warn("app", "reload: dedupe settings changed; they take "
                               "effect after a restart");
}

struct live_names {
        const struct eb_config *cfg;
        int found;
};

/* The poller passes each running source's name as borrowed from the
 * configuration it was started with: the same pointer means that one. */
static void live_name(const char *name, const char *provider,
                      const struct eb_source_stats *st, void *opaque)
{
        struct live_names *l = opaque;
        size_t i;

        (void)provider;
        (void)st;
        for (i = 0; i < l->cfg->sources_cnt && !l->found; i++)
                l->found = name == l->cfg->sources[i].name;
}

/* @returns 1 while something may still point into retired @p c. */
static int retired_borrowed(eb_app_t *app, const struct eb_config *c)
{
        struct live_names l = {c, 0};
        size_t i;

        if (app->webhook && (eb_webhook_held(app->webhook) > 0 ||
                             eb_webhook_pending(app->webhook) > 0))
                return 1;
        if ((app->pipeline && eb_pipeline_pending(app->pipeline) > 0) ||
            (app->shards && !eb_shards_idle(app->shards)))
                return 1;
        if (!app->poller)
                return 0;
        eb_poller_foreach(app->poller, live_name, &l);
        if (l.found)
                return 1;
        /* a source removed or restarted by a reload: its earlier run may
         * still have a request or publish in flight */
        for (i = 0; i < c->sources_cnt; i++)
                if (eb_poller_busy(app->poller, c->sources[i].name))
                        return 1;
        return 0;
}

/* Free the retired configurations nothing borrows any more. */
static void retire_sweep(eb_app_t *app)
{
        size_t i, kept = 0;

        for (i = 0; i < app->nretired; i++) {
                if (retired_borrowed(app, app->retired[i]))
                        app->retired[kept++] = app->retired[i];
                else
                        eb_config_free(app->retired[i]);
        }
        if (kept < app->nretired) {
                eb_info("app",
                        "freed %zu configuration(s) replaced by reloads, "
                        "%zu still in use",
                        app->nretired - kept, kept);
#ifdef __GLIBC__
                /* A configuration is thousands of small blocks; glibc
                 * keeps the pages they leave, scattered between blocks
                 * still in use, so the process grew with every reload of
                 * a large one although each was freed. Give them back. */
                malloc_trim(0);
#endif
        }
        app->nretired = kept;
        if (kept && app->retire_timer &&
            !evtimer_pending(app->retire_timer, NULL)) {
                struct timeval tv = {1, 0};

                evtimer_add(app->retire_timer, &tv);
        }
}

static void on_retire_tick(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        retire_sweep(arg);
}

/* evbridge_config_retired: configurations a reload replaced that are
 * still borrowed (0 once what they started has settled). */
static void retired_collect(struct eb_prom *w, void *opaque)
{
        eb_app_t *app = opaque;

        eb_prom_family(w, "evbridge_config_retired", "gauge",
                       "Configurations replaced by a reload and still in "
                       "use by work in flight.");
        eb_prom_sample(w, NULL, NULL, (double)app->nretired);
}

void eb_app_reload(eb_app_t *app)
{
        struct eb_config *old = app->cfg, *ncfg;
        struct eb_reload_tally tally = {0, 0, 0};
        struct app_reload r = {app, &tally};
        char errstr[1024];

        if (!old->path || old->path[0] == '<') {
                eb_info("app", "SIGHUP: running on the built-in default, no "
                               "configuration file to reload");
                return;
        }
        eb_info("app", "SIGHUP: reloading %s", old->path);
        ncfg = eb_config_load(old->path, errstr, sizeof(errstr));
        if (ncfg && (eb_provider_check_config(ncfg, errstr, sizeof(errstr)) ||
                     eb_webhook_check_config(ncfg, errstr, sizeof(errstr)))) {
                eb_config_free(ncfg);
                ncfg = NULL;
        }
        if (!ncfg) {
                app->reload_failures++;
                eb_error("app",
                         "reload failed, the running configuration stays in "
                         "force: %s",
                         errstr);
                return;
        }
        if (app->webhook &&
            eb_webhook_reload(app->webhook, ncfg, errstr, sizeof(errstr))) {
                app->reload_failures++;
                eb_error("app",
                         "reload failed, the running configuration stays in "
                         "force: %s",
                         errstr);
                eb_config_free(ncfg);
                return;
        }
        /* Against what runs (the configuration the process started
         * with), so that a revert to it is not a change. */
        warn_restart_only(app->boot_cfg, ncfg);
        eb_log_set_level(ncfg->log_level);
        eb_log_set_format(ncfg->log_format);

        /* Sharded: the owned shards apply what changed. */
        if (app->shards) {
                eb_shards_reload(app->shards, ncfg, &tally);
                goto swap;
        }
        /* Exactly-once before the restore: no source runs yet; the
         * restore starts the sources of the configuration then in force. */
        if ((app->eos && !app->restored) || !app->kafka_ok)
                goto swap;
        eb_config_diff_sources(old, ncfg, reload_source, &r);
swap:
        if (old != app->boot_cfg) {
                app->retired = eb_xrealloc(app->retired,
                                           (app->nretired + 1) *
                                                   sizeof(*app->retired));
                app->retired[app->nretired++] = old;
        }
        app->cfg = ncfg;
        app->reloads++;
        eb_info("app",
                "reload done: %d added, %d removed, %d changed, %zu "
                "source(s) in total",
                tally.added, tally.removed, tally.changed,
                eb_config_enabled_sources(ncfg));
        retire_sweep(app);
}

static void on_signal(evutil_socket_t sig, short what, void *arg)
{
        eb_app_t *app = arg;

        (void)what;
        if (sig == SIGHUP) {
                if (!app->draining)
                        eb_app_reload(app);
                return;
        }
        if (app->draining) {
                eb_warn("app", "second stop signal: stopping now");
                app->drain_deadline_ms = 0;
                return;
        }
        eb_app_shutdown(app, sig == SIGTERM ? "SIGTERM" : "SIGINT", 0);
}

static void on_kafka_fatal(void *opaque, const char *reason)
{
        eb_app_t *app = opaque;

        eb_error("app", "Kafka producer fatal error: %s", reason);
        app->kafka_fatal = 1;
        eb_app_shutdown(app, "Kafka fatal error", 1);
}

/* ---- HTTP listener and webhook intake -------------------------------- */

/* /readyz and webhook intake: ready while the producer exists and is not
 * in a fatal state, and the process is not draining. */
static int app_ready(void *opaque, const char **why)
{
        eb_app_t *app = opaque;

        if (app->draining) {
                *why = "shutting down";
                return 0;
        }
        if (!app->kafka && !app->shards) {
                *why = "Kafka producer not created";
                return 0;
        }
        if (app->kafka_fatal) {
                *why = "Kafka producer failed (fatal error)";
                return 0;
        }
        if (!app->shards && !app->kafka_ok) {
                *why = app->gate_why;
                return 0;
        }
        if (app->guard && eb_instance_waiting(app->guard)) {
                *why = eb_instance_waiting(app->guard);
                return 0;
        }
        if (app->eos && !app->restored && !app->shards) {
                *why = app->restore_attempts ? app->gate_why
                                             : "state not restored";
                return 0;
        }
        /* Ready (webhooks and the other sources go on), with a detail. */
        if (app->poller) {
                char names[600];
                int n = eb_poller_oauth_refused(app->poller, names,
                                                sizeof(names));

                if (n) {
                        snprintf(app->ready_detail, sizeof(app->ready_detail),
                                 "%d source(s) stopped, OAuth refresh "
                                 "refused (re-authorize, set "
                                 "credentials.refresh_token): %s",
                                 n, names);
                        *why = app->ready_detail;
                }
        }
        return 1;
}

/* GET /status: what each source is doing, as JSON (`evbridge status`
 * renders it for a person). */
static void app_status(eb_httpd_t *h, struct evhttp_request *req,
                       const char *rest, void *opaque)
{
        eb_app_t *app = opaque;
        enum evhttp_cmd_type cmd = evhttp_request_get_command(req);
        const char *why = NULL;
        json_t *o;
        char *body;
        int ready;

        if (*rest) {
                eb_httpd_reply(h, req, 404, NULL, "text/plain", "not found\n",
                               10);
                return;
        }
        if (cmd != EVHTTP_REQ_GET && cmd != EVHTTP_REQ_HEAD) {
                static const char *const allow[] = {"Allow", "GET, HEAD", NULL};

                eb_httpd_reply(h, req, 405, allow, "text/plain",
                               "method not allowed\n", 19);
                return;
        }
        ready = app_ready(app, &why);
        o = json_object();
        json_object_set_new(o, "version", json_string(EB_VERSION));
        json_object_set_new(o, "kafka", json_string(eb_app_bootstrap(app)));
        json_object_set_new(o, "ready", json_boolean(ready));
        json_object_set_new(o, "not_ready_reason",
                            ready ? json_null() : json_string(why ? why : ""));
        json_object_set_new(o, "ready_detail",
                            ready && why ? json_string(why) : json_null());
        if (app->kafka) {
                char fail[512], ts[40];
                int64_t when =
                        eb_kafka_last_failure(app->kafka, fail, sizeof(fail));

                if (when)
                        eb_rfc3339_format(when, 0, ts, sizeof(ts));
                json_object_set_new(o, "kafka_last_failure",
                                    when ? json_string(fail) : json_null());
                json_object_set_new(o, "kafka_last_failure_time",
                                    when ? json_string(ts) : json_null());
        }
        json_object_set_new(o, "sources",
                            app->poller ? eb_poller_status(app->poller)
                                        : json_array());
        body = json_dumps(o, JSON_INDENT(2));
        json_decref(o);
        eb_httpd_reply(h, req, 200, NULL, "application/json", body,
                       body ? strlen(body) : 0);
        free(body);
}

static int app_trigger(void *opaque, const char *source)
{
        eb_app_t *app = opaque;

        if (app->shards)
                return eb_shards_trigger(app->shards, source);
        return eb_poller_trigger(app->poller, source);
}

static int app_http_new(eb_app_t *app, const struct eb_sink *sink, char *errstr,
                        size_t errstr_size)
{
        const struct eb_config *cfg = app->cfg;
        struct eb_webhook_deps deps;
        size_t i, hooks = 0;

        if (eb_webhook_check_config(cfg, errstr, errstr_size))
                return -EINVAL;
        for (i = 0; i < cfg->sources_cnt; i++)
                hooks += cfg->sources[i].webhook_enabled ? 1 : 0;
        if (!cfg->listen) {
                if (hooks)
                        eb_warn("app",
                                "%zu source(s) have a webhook block but "
                                "http.listen is null: no webhook can arrive",
                                hooks);
                return 0;
        }
        memset(&deps, 0, sizeof(deps));
        deps.sink = *sink;
        deps.pipeline = app->pipeline;
        deps.trigger = app_trigger;
        deps.trigger_opaque = app;
        deps.ready = app_ready;
        deps.ready_opaque = app;
        app->webhook =
                eb_webhook_new(app->base, cfg, &deps, errstr, errstr_size);
        if (!app->webhook)
                return -EINVAL;
        app->httpd =
                eb_httpd_new(app->base, cfg, app->metrics, errstr, errstr_size);
        if (!app->httpd)
                return -EADDRINUSE;
        eb_httpd_set_ready(app->httpd, app_ready, app);
        if (eb_httpd_route(app->httpd, "/webhooks/", eb_webhook_handle,
                           app->webhook) ||
            eb_httpd_route(app->httpd, "/status", app_status, app))
                return -ENOSPC;
        eb_metrics_add_collector(app->metrics, eb_webhook_collect,
                                 app->webhook);
        return 0;
}

/* ---- sharded mode (scale.shards > 0, eb_shard) ----------------------- */

static int app_poll_publish(void *opaque, const struct eb_source_cfg *src,
                            struct eb_event **evts, size_t cnt, json_t *cp,
                            eb_publish_done_cb *done, void *arg)
{
        eb_app_t *app = opaque;
        struct eb_sink sink = eb_shards_poll_sink(app->shards);

        return sink.publish(sink.opaque, src, evts, cnt, cp, done, arg);
}

static void on_shards_fatal(void *opaque, const char *why)
{
        eb_app_t *app = opaque;

        (void)why; /* logged by eb_shard */
        app->kafka_fatal = 1;
        eb_app_shutdown(app, "sharding failed", 1);
}

/* The poller hands at most kafka.batch.max_events to one publish, so a
 * time slice is rendered and produced in parts of that size. */
static const struct eb_poller_opts *app_poller_opts(const struct eb_config *cfg,
                                                    struct eb_poller_opts *o)
{
        memset(o, 0, sizeof(*o));
        o->publish_max_events = cfg->batch_max_events;
        return o;
}

/* Sources are polled by the shards this replica owns; webhooks go to the
 * intake topic, whichever replica receives them. */
static int app_sharded_new(eb_app_t *app, char *errstr, size_t errstr_size)
{
        struct eb_sink sink = {app_poll_publish, app};
        struct eb_poller_opts popts;

        app->http = eb_http_new(app->base, errstr, errstr_size);
        if (!app->http)
                return -EINVAL;
        app->poller = eb_poller_new(app->base, app->http, &sink,
                                    app_poller_opts(app->cfg, &popts));
        app->shards = eb_shards_new(app->base, app->cfg, app->poller,
                                    on_shards_fatal, app, errstr, errstr_size);
        if (!app->shards)
                return -EINVAL;
        app->metrics_src.poller = app->poller;
        app->metrics_src.pipeline_for = eb_shards_pipeline_for;
        app->metrics_src.pipeline_for_opaque = app->shards;
        app->metrics_src.version = EB_VERSION;
        app->metrics_src.gitrev = EB_GITREV;
        eb_metrics_register_app(app->metrics, &app->metrics_src);
        eb_metrics_add_collector(app->metrics, eb_shards_collect, app->shards);
        sink = eb_shards_intake_sink(app->shards);
        return app_http_new(app, &sink, errstr, errstr_size);
}

/*
 * Whether both state topics already exist (eb_state_topics_exist()). Then
 * CreateTopics is skipped: a cluster without a controller (the standalone
 * evbridge-kafka-mock, created with --topic) or a principal without
 * CREATE works when they were made beforehand. The embedded cluster
 * always goes through eb_state_ensure_topics(), which creates them on the
 * mock directly.
 */
static int state_topics_exist(eb_kafka_t *k, const struct eb_config *cfg)
{
        if (eb_kafka_mock_cluster(k))
                return 0;
        return eb_kafka_state_topics_exist(k, cfg);
}

static int app_add_sources(eb_app_t *app, json_t *cps, char *errstr,
                           size_t errstr_size)
{
        const struct eb_config *cfg = app->cfg;
        size_t i;

        for (i = 0; i < cfg->sources_cnt; i++) {
                const struct eb_source_cfg *src = &cfg->sources[i];
                json_t *cp = cps ? json_object_get(cps, src->name) : NULL;
                if (!src->enabled) {
                        eb_info("app", "source=%s disabled", src->name);
                        continue;
                }
                if (eb_poller_add(app->poller, src, cp, errstr, errstr_size))
                        return -EINVAL;
                eb_info("app", "source=%s provider=%s interval=%lldms%s",
                        src->name, src->provider,
                        (long long)src->poll_interval_ms,
                        cp ? " (restored checkpoint)" : "");
        }
        return 0;
}

/*
 * Exactly-once start-up, second half (on the loop): the producer holds
 * the transactional.id (an older instance is fenced and its open
 * transaction aborted), so the state topics can be read to their end:
 * dedupe ids and checkpoints. This blocks the loop; nothing else runs yet
 * (no source, /readyz and webhooks answer "state not restored").
 */
static void app_restore(eb_app_t *app);

static void on_txn_init(void *opaque, int err, const char *errstr)
{
        eb_app_t *app = opaque;

        if (err == -ESHUTDOWN)
                return; /* from eb_kafka_free(): the app is going away */
        if (err) {
                eb_error("app", "Kafka transactions cannot start: %s", errstr);
                app->kafka_fatal = 1;
                eb_app_shutdown(app, "Kafka transactions cannot start", 1);
                return;
        }
        if (app->draining)
                return;
        app_restore(app);
}

static void on_restore_retry(evutil_socket_t fd, short what, void *arg)
{
        eb_app_t *app = arg;

        (void)fd;
        (void)what;
        if (!app->draining)
                app_restore(app);
}

/*
 * Read the state topics, then start the sources. A failure a retry can
 * fix (authorization, a timeout, a broker error) is logged with its
 * cause, shown by /readyz and retried with a doubling backoff; a bad
 * configuration (-EINVAL) stops the process.
 */
static void app_restore(eb_app_t *app)
{
        struct eb_state_restore_stats st;
        struct timeval tv;
        char ebuf[1024];
        json_t *cps;
        int rc;

        memset(&st, 0, sizeof(st));
        cps = json_object();
        rc = eb_pipeline_restore(app->pipeline, eb_kafka_bootstrap(app->kafka),
                                 cps, &st, ebuf, sizeof(ebuf));
        if (rc == -EINVAL || (rc && !app->restore_timer)) {
                eb_error("app", "state restore failed: %s", ebuf);
                json_decref(cps);
                eb_app_shutdown(app, "state restore failed", 1);
                return;
        }
        if (rc) {
                json_decref(cps);
                app->restore_attempts++;
                if (!app->restore_backoff_ms)
                        app->restore_backoff_ms = EB_APP_GATE_BACKOFF_MS;
                snprintf(app->gate_why, sizeof(app->gate_why),
                         "state not restored: %s", ebuf);
                eb_warn("app",
                        "state restore failed (attempt %d): %s; next try in "
                        "%d s",
                        app->restore_attempts, ebuf,
                        app->restore_backoff_ms / 1000);
                tv.tv_sec = app->restore_backoff_ms / 1000;
                tv.tv_usec = 0;
                evtimer_add(app->restore_timer, &tv);
                app->restore_backoff_ms *= 2;
                if (app->restore_backoff_ms > EB_APP_GATE_BACKOFF_MAX)
                        app->restore_backoff_ms = EB_APP_GATE_BACKOFF_MAX;
                return;
        }
        eb_info("app",
                "restored %llu ids and %llu checkpoints in %lld ms (%llu "
                "record(s), %llu id(s) of aborted transactions skipped, "
                "%llu undecodable)",
                (unsigned long long)st.ids, (unsigned long long)st.checkpoints,
                (long long)st.ms, (unsigned long long)st.records,
                (unsigned long long)st.ids_aborted,
                (unsigned long long)st.garbage);
        if (app_add_sources(app, cps, ebuf, sizeof(ebuf))) {
                eb_error("app", "%s", ebuf);
                json_decref(cps);
                eb_app_shutdown(app, "a source cannot start", 1);
                return;
        }
        json_decref(cps);
        app->restored = 1;
        eb_info("app", "state restored: ready");
}

/* ---- start-up against real brokers ------------------------------------ */

/* The helper thread: is the cluster usable? */
static void *probe_main(void *arg)
{
        struct kafka_probe *p = arg;
        const struct rd_kafka_metadata *md = NULL;
        rd_kafka_resp_err_t err;
        char buf[sizeof(p->errstr)];
        int rc = 0;

        buf[0] = '\0';
        err = rd_kafka_metadata(p->rk, 0, NULL, &md, EB_APP_PROBE_METADATA_MS);
        if (err) {
                snprintf(buf, sizeof(buf),
                         "no answer from kafka.brokers within %d ms: %s",
                         EB_APP_PROBE_METADATA_MS, rd_kafka_err2str(err));
                rc = -EHOSTUNREACH;
        } else {
                rd_kafka_metadata_destroy(md);
                if (p->cfg->delivery == EB_DELIVERY_EXACTLY_ONCE &&
                    !eb_state_topics_exist(p->rk, p->cfg)) {
                        char msg[sizeof(buf) - 128];

                        rc = eb_state_ensure_topics(p->rk, NULL, p->cfg, 1,
                                                    EB_APP_PROBE_TOPICS_MS, msg,
                                                    sizeof(msg));
                        /* librdkafka's words when no broker is named
                         * controller (or it is not reachable) */
                        if (rc == -ETIMEDOUT &&
                            strstr(msg, "waiting for controller"))
                                snprintf(buf, sizeof(buf),
                                         "the cluster names no controller, "
                                         "so the state topics cannot be "
                                         "created: %s",
                                         msg);
                        else if (rc)
                                snprintf(buf, sizeof(buf), "%s", msg);
                }
        }
        pthread_mutex_lock(&p->mu);
        p->rc = rc;
        snprintf(p->errstr, sizeof(p->errstr), "%s", buf);
        p->done = 1;
        pthread_mutex_unlock(&p->mu);
        return NULL;
}

static int probe_start(eb_app_t *app)
{
        struct kafka_probe *p = &app->probe;

        p->rk = eb_kafka_rk(app->kafka);
        p->cfg = app->boot_cfg;
        p->done = 0;
        p->rc = 0;
        p->errstr[0] = '\0';
        if (pthread_create(&p->thread, NULL, probe_main, p) != 0)
                return -EAGAIN;
        p->started = 1;
        return 0;
}

/* Waits for a probe still running (eb_app_free()). */
static void probe_join(eb_app_t *app)
{
        if (!app->probe.started)
                return;
        pthread_join(app->probe.thread, NULL);
        app->probe.started = 0;
}

/* librdkafka's text without its " (after 0ms in state CONNECT, ...)". */
static void trim_after(char *s)
{
        char *p = strstr(s, " (after ");

        if (p)
                *p = '\0';
}

/* No other live instance: transactions may start (eb_instance.h). */
static void on_instance_go(void *opaque)
{
        eb_app_t *app = opaque;
        int rc = eb_kafka_txn_init(app->kafka, on_txn_init, app);

        if (rc) {
                eb_error("app", "kafka: cannot start transactions: %s",
                         strerror(-rc));
                app->kafka_fatal = 1;
                eb_app_shutdown(app, "Kafka transactions cannot start", 1);
        }
}

static void gate_pass(eb_app_t *app, int attempts)
{
        char ebuf[1024];

        app->kafka_ok = 1;
        app->gate_why[0] = '\0';
        eb_kafka_problem_clear(app->kafka);
        eb_info("app", "kafka: the cluster at %s answered%s%s",
                eb_kafka_bootstrap(app->kafka),
                attempts > 1 ? " after earlier failures" : "",
                app->eos ? "; starting transactions" : "; starting sources");
        if (app->eos) {
                /* One active instance per transactional.id: a standby
                 * waits here until the other one is gone. */
                app->guard = eb_instance_new(app->base,
                                             eb_kafka_bootstrap(app->kafka),
                                             app->boot_cfg, ebuf, sizeof(ebuf));
                if (!app->guard) {
                        eb_error("app", "%s", ebuf);
                        eb_app_shutdown(app, "Kafka transactions cannot start",
                                        1);
                        return;
                }
                eb_instance_start(app->guard, on_instance_go, app);
                return;
        }
        if (app_add_sources(app, NULL, ebuf, sizeof(ebuf))) {
                eb_error("app", "%s", ebuf);
                eb_app_shutdown(app, "a source cannot start", 1);
        }
}

/*
 * Until the cluster answers: one probe at a time, with a doubling
 * backoff; each failure is logged with its cause, and the cause is what
 * /readyz says. Only what a retry cannot fix stops the process: a bad
 * state topic (-EINVAL here) and denied authentication (the producer's
 * fatal callback).
 */
static void on_gate_tick(evutil_socket_t fd, short what, void *arg)
{
        eb_app_t *app = arg;
        struct kafka_probe *p = &app->probe;
        struct timeval tv = {0, EB_APP_GATE_TICK_MS * 1000};
        char why[sizeof(p->errstr)], problem[512];
        int64_t now = eb_mono_ms();
        int done = 0, rc = 0;

        (void)fd;
        (void)what;
        if (app->draining || app->kafka_ok)
                return;
        if (!p->started) {
                if (now >= app->gate_retry_ms) {
                        if (probe_start(app) == 0)
                                app->gate_attempts++;
                }
                evtimer_add(app->gate_timer, &tv);
                return;
        }
        eb_kafka_problem(app->kafka, problem, sizeof(problem));
        trim_after(problem);
        pthread_mutex_lock(&p->mu);
        done = p->done;
        rc = p->rc;
        snprintf(why, sizeof(why), "%s", p->errstr);
        pthread_mutex_unlock(&p->mu);
        if (!done) {
                /* Say what librdkafka saw as soon as it saw it. */
                if (problem[0] && strcmp(problem, app->gate_logged)) {
                        snprintf(app->gate_logged, sizeof(app->gate_logged),
                                 "%s", problem);
                        snprintf(app->gate_why, sizeof(app->gate_why),
                                 "Kafka not usable yet: %s", problem);
                        eb_warn("app", "kafka: not ready: %s; retrying",
                                problem);
                }
                evtimer_add(app->gate_timer, &tv);
                return;
        }
        probe_join(app);
        if (rc == 0) {
                gate_pass(app, app->gate_attempts);
                return;
        }
        if (rc == -EHOSTUNREACH && problem[0])
                snprintf(why, sizeof(why), "%s", problem);
        snprintf(app->gate_why, sizeof(app->gate_why),
                 "Kafka not usable yet: %s", why);
        if (rc == -EINVAL) {
                eb_error("app", "kafka: %s", why);
                app->kafka_fatal = 1;
                eb_app_shutdown(app, "Kafka cannot be used as configured", 1);
                return;
        }
        if (!app->gate_backoff_ms)
                app->gate_backoff_ms = EB_APP_GATE_BACKOFF_MS;
        eb_warn("app", "kafka: not ready (attempt %d): %s; next try in %d s",
                app->gate_attempts, why, app->gate_backoff_ms / 1000);
        snprintf(app->gate_logged, sizeof(app->gate_logged), "%s", problem);
        app->gate_retry_ms = now + app->gate_backoff_ms;
        app->gate_backoff_ms *= 2;
        if (app->gate_backoff_ms > EB_APP_GATE_BACKOFF_MAX)
                app->gate_backoff_ms = EB_APP_GATE_BACKOFF_MAX;
        evtimer_add(app->gate_timer, &tv);
}

eb_app_t *eb_app_new(struct eb_config *cfg, char *errstr, size_t errstr_size)
{
        eb_app_t *app = eb_xcalloc(1, sizeof(*app));
        struct eb_unit unit;
        struct eb_sink sink;
        struct eb_poller_opts popts;

        app->cfg = cfg;
        app->boot_cfg = cfg;
        app->metrics = eb_metrics_new();
        eb_metrics_add_collector(app->metrics, retired_collect, app);
        app->metrics_src.start_time_ms = eb_now_ms();
        eb_log_set_level(cfg->log_level);
        eb_log_set_format(cfg->log_format);
        if (eb_provider_check_config(cfg, errstr, errstr_size))
                goto err;
        signal(SIGPIPE, SIG_IGN);
        app->base = event_base_new();
        if (!app->base) {
                snprintf(errstr, errstr_size, "cannot create event base");
                goto err;
        }
        /* Exactly-once: a transactional producer, and the state topics
         * (docs/delivery.md "The state topics"). At-least-once keeps the
         * idempotent producer and no state topics: checkpoints then live
         * only in the process, as before. */
        app->eos = cfg->delivery == EB_DELIVERY_EXACTLY_ONCE;
        if (cfg->scale_shards > 0) {
                if (app_sharded_new(app, errstr, errstr_size))
                        goto err;
                goto signals;
        }
        /* The same start as a shard's (eb_unit): producer and pipeline. */
        if (eb_unit_open(&unit, app->base, cfg,
                         app->eos ? EB_KAFKA_NEW_F_TRANSACTIONS : 0,
                         on_kafka_fatal, app, errstr, errstr_size))
                goto err;
        app->kafka = unit.kafka;
        app->pipeline = unit.pipeline;
        /* The embedded cluster is there at once; real brokers are probed
         * from the loop (on_gate_tick) and nothing starts before. */
        app->kafka_ok = eb_kafka_embedded(app->kafka);
        if (app->kafka_ok && app->eos && !state_topics_exist(app->kafka, cfg) &&
            eb_kafka_ensure_state_topics(app->kafka, cfg, 1, 30000, errstr,
                                         errstr_size))
                goto err;
        if (pthread_mutex_init(&app->probe.mu, NULL) != 0) {
                snprintf(errstr, errstr_size, "cannot create a lock");
                goto err;
        }
        app->gate_timer = evtimer_new(app->base, on_gate_tick, app);
        app->restore_timer = evtimer_new(app->base, on_restore_retry, app);
        if (!app->gate_timer || !app->restore_timer) {
                snprintf(errstr, errstr_size, "cannot create the start timer");
                goto err;
        }
        snprintf(app->gate_why, sizeof(app->gate_why),
                 "waiting for the Kafka cluster at %s", cfg->brokers);
        app->http = eb_http_new(app->base, errstr, errstr_size);
        if (!app->http)
                goto err;
        sink = eb_pipeline_sink(app->pipeline);
        app->poller = eb_poller_new(app->base, app->http, &sink,
                                    app_poller_opts(app->cfg, &popts));
        /* Exactly-once: sources start after the restore (on_txn_init). */
        if (app->kafka_ok && !app->eos &&
            app_add_sources(app, NULL, errstr, errstr_size))
                goto err;
        /* metrics: register the application's collectors */
        app->metrics_src.poller = app->poller;
        app->metrics_src.pipeline = app->pipeline;
        app->metrics_src.kafka = app->kafka;
        app->metrics_src.version = EB_VERSION;
        app->metrics_src.gitrev = EB_GITREV;
        eb_metrics_register_app(app->metrics, &app->metrics_src);

        /* HTTP listener and webhook intake: bound here, so a taken port
         * fails the start-up with a clear message. */
        if (app_http_new(app, &sink, errstr, errstr_size))
                goto err;

      signals:
        app->sig_term = evsignal_new(app->base, SIGTERM, on_signal, app);
        app->sig_int = evsignal_new(app->base, SIGINT, on_signal, app);
        app->sig_hup = evsignal_new(app->base, SIGHUP, on_signal, app);
        app->drain_timer = evtimer_new(app->base, on_drain_tick, app);
        app->retire_timer = evtimer_new(app->base, on_retire_tick, app);
        if (!app->sig_term || !app->sig_int || !app->sig_hup ||
            !app->drain_timer || !app->retire_timer) {
                snprintf(errstr, errstr_size, "cannot create signal events");
                goto err;
        }
        evsignal_add(app->sig_term, NULL);
        evsignal_add(app->sig_int, NULL);
        evsignal_add(app->sig_hup, NULL);
        if (!app->shards && !app->kafka_ok) {
                struct timeval now = {0, 0};

                evtimer_add(app->gate_timer, &now);
        } else if (app->eos && !app->shards) {
                int rc = eb_kafka_txn_init(app->kafka, on_txn_init, app);
                if (rc) {
                        snprintf(errstr, errstr_size,
                                 "kafka: cannot start transactions: %s",
                                 strerror(-rc));
                        goto err;
                }
        }
        return app;
err:
        app->cfg = NULL; /* the caller keeps it on failure */
        app->boot_cfg = NULL;
        eb_app_free(app);
        return NULL;
}

int eb_app_run(eb_app_t *app)
{
        eb_info("app", "evbridge %s running: %zu source(s), kafka %s%s",
                EB_VERSION, eb_config_enabled_sources(app->cfg),
                eb_app_bootstrap(app),
                app->kafka && eb_kafka_embedded(app->kafka) ? " (embedded)"
                                                            : "");
        event_base_dispatch(app->base);
        eb_info("app", "stopped");
        return app->exit_code;
}

struct event_base *eb_app_base(eb_app_t *app)
{
        return app->base;
}

const char *eb_app_bootstrap(eb_app_t *app)
{
        if (!app->kafka)
                return app->cfg->brokers;
        return eb_kafka_bootstrap(app->kafka);
}

eb_metrics_t *eb_app_metrics(eb_app_t *app)
{
        return app->metrics;
}

int eb_app_http_port(eb_app_t *app)
{
        return app->httpd ? eb_httpd_port(app->httpd) : -1;
}

void eb_app_free(eb_app_t *app)
{
        if (!app)
                return;
        /* HTTP (normally already done by the drain, inside the loop):
         * held webhooks are answered 503 and no connection is accepted;
         * the listener's and the intake's collectors leave the registry
         * before it is freed. */
        if (app->webhook) {
                eb_webhook_shutdown(app->webhook);
                eb_metrics_remove_collector(app->metrics, eb_webhook_collect,
                                            app->webhook);
        }
        if (app->httpd) {
                eb_httpd_stop(app->httpd);
                eb_httpd_set_metrics(app->httpd, NULL);
        }
        /* metrics first: its collectors read the modules freed below */
        eb_metrics_free(app->metrics);
        if (app->drain_timer)
                event_free(app->drain_timer);
        if (app->retire_timer)
                event_free(app->retire_timer);
        if (app->gate_timer)
                event_free(app->gate_timer);
        if (app->restore_timer)
                event_free(app->restore_timer);
        /* A probe still running uses the producer: it ends first (a few
         * seconds at most, its librdkafka calls are bounded). */
        probe_join(app);
        if (app->gate_timer)
                pthread_mutex_destroy(&app->probe.mu);
        /* 1. No new requests. 2. eb_kafka_free flushes (bounded) and runs
         * every remaining delivery callback, which settles the pipeline's
         * batches and calls back into the poller: both must still exist.
         * 3. Then the poller cancels what curl still has in flight. */
        if (app->poller)
                eb_poller_stop(app->poller);
        eb_shards_free(app->shards);
        eb_instance_free(app->guard);
        eb_kafka_free(app->kafka);
        eb_poller_free(app->poller);
        /* After Kafka: no publish callback can reach the intake any more.
         * Then the listener closes its connections. */
        eb_webhook_free(app->webhook);
        eb_httpd_free(app->httpd);
        eb_pipeline_free(app->pipeline);
        eb_http_free(app->http);
        /* The signal events go last. Freeing them makes libevent restore
         * the default action, which for SIGTERM/SIGINT is to die: a second
         * stop signal during the teardown above would have killed us
         * before Kafka was flushed (exit 143). Until here libevent's
         * handler swallows them; from here on they are ignored. */
        if (app->sig_term) {
                event_free(app->sig_term);
                signal(SIGTERM, SIG_IGN);
        }
        if (app->sig_int) {
                event_free(app->sig_int);
                signal(SIGINT, SIG_IGN);
        }
        if (app->sig_hup)
                event_free(app->sig_hup);
        if (app->base)
                event_base_free(app->base);
        if (app->boot_cfg != app->cfg)
                eb_config_free(app->boot_cfg);
        eb_config_free(app->cfg);
        for (size_t i = 0; i < app->nretired; i++)
                eb_config_free(app->retired[i]);
        free(app->retired);
        free(app);
}
