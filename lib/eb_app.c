#include "eb_app.h"

#include <errno.h>
#include <event2/event.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>

#include "eb_http.h"
#include "eb_httpd.h"
#include "eb_kafka.h"
#include "eb_metrics_collect.h"
#include "eb_pipeline.h"
#include "eb_poller.h"
#include "eb_provider.h"
#include "eb_shard.h"
#include "eb_state.h"
#include "eb_time.h"
#include "eb_util.h"
#include "eb_webhook.h"

#define EB_APP_DRAIN_TICK_MS 50
/* After the drain, how long answered webhooks may take to reach their
 * sockets before the loop stops and the listener is freed. */
#define EB_APP_HTTP_FLUSH_MS 1000

struct eb_app_s {
        struct event_base *base;
        struct eb_config *cfg;
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
        /* Configurations replaced by SIGHUP reloads: sources, batches and
         * held requests may still point into them, so they live until
         * eb_app_free(). A few KB per reload. */
        struct eb_config **retired;
        size_t nretired;
        uint64_t reloads, reload_failures;
        /* Exactly-once: sources start and the process reports ready only
         * once eb_kafka_txn_init() and the state restore are done. */
        int eos;
        int restored;
        /* Sharded (scale.shards > 0): shards own producers and pipelines;
         * app->kafka and app->pipeline stay NULL. */
        eb_shards_t *shards;
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
        warn_restart_only(old, ncfg);
        eb_log_set_level(ncfg->log_level);
        eb_log_set_format(ncfg->log_format);

        /* Sharded: the owned shards apply what changed. */
        if (app->shards) {
                eb_shards_reload(app->shards, ncfg, &tally);
                goto swap;
        }
        /* Exactly-once before the restore: no source runs yet; the
         * restore starts the sources of the configuration then in force. */
        if (app->eos && !app->restored)
                goto swap;
        eb_config_diff_sources(old, ncfg, reload_source, &r);
swap:
        app->retired = eb_xrealloc(app->retired,
                                   (app->nretired + 1) * sizeof(*app->retired));
        app->retired[app->nretired++] = old;
        app->cfg = ncfg;
        app->reloads++;
        eb_info("app",
                "reload done: %d added, %d removed, %d changed, %zu "
                "source(s) in total",
                tally.added, tally.removed, tally.changed, ncfg->sources_cnt);
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
        if (app->eos && !app->restored && !app->shards) {
                *why = "state not restored";
                return 0;
        }
        return 1;
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
                           app->webhook))
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
        return eb_state_topics_exist(eb_kafka_rk(k), cfg);
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
static void on_txn_init(void *opaque, int err, const char *errstr)
{
        eb_app_t *app = opaque;
        struct eb_state_restore_stats st;
        char ebuf[1024];
        json_t *cps;

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
        memset(&st, 0, sizeof(st));
        cps = json_object();
        if (eb_pipeline_restore(app->pipeline, eb_kafka_bootstrap(app->kafka),
                                cps, &st, ebuf, sizeof(ebuf))) {
                eb_error("app", "state restore failed: %s", ebuf);
                json_decref(cps);
                eb_app_shutdown(app, "state restore failed", 1);
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

eb_app_t *eb_app_new(struct eb_config *cfg, char *errstr, size_t errstr_size)
{
        eb_app_t *app = eb_xcalloc(1, sizeof(*app));
        struct eb_sink sink;
        struct eb_poller_opts popts;

        app->cfg = cfg;
        app->metrics = eb_metrics_new();
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
         * (design.md "State lives in Kafka"). At-least-once keeps the
         * idempotent producer and no state topics: checkpoints then live
         * only in the process, as before. */
        app->eos = cfg->delivery == EB_DELIVERY_EXACTLY_ONCE;
        if (cfg->scale_shards > 0) {
                if (app_sharded_new(app, errstr, errstr_size))
                        goto err;
                goto signals;
        }
        app->kafka = eb_kafka_new_ex(app->base, cfg,
                                     app->eos ? EB_KAFKA_NEW_F_TRANSACTIONS : 0,
                                     errstr, errstr_size);
        if (!app->kafka)
                goto err;
        eb_kafka_set_fatal_cb(app->kafka, on_kafka_fatal, app);
        if (app->eos && !state_topics_exist(app->kafka, cfg) &&
            eb_state_ensure_topics(eb_kafka_rk(app->kafka),
                                   eb_kafka_mock_cluster(app->kafka), cfg, 1,
                                   30000, errstr, errstr_size))
                goto err;
        app->http = eb_http_new(app->base, errstr, errstr_size);
        if (!app->http)
                goto err;
        app->pipeline = eb_pipeline_new(app->base, cfg, app->kafka, errstr,
                                        errstr_size);
        if (!app->pipeline)
                goto err;
        sink = eb_pipeline_sink(app->pipeline);
        app->poller = eb_poller_new(app->base, app->http, &sink,
                                    app_poller_opts(app->cfg, &popts));
        /* Exactly-once: sources start after the restore (on_txn_init). */
        if (!app->eos && app_add_sources(app, NULL, errstr, errstr_size))
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
        if (!app->sig_term || !app->sig_int || !app->sig_hup ||
            !app->drain_timer) {
                snprintf(errstr, errstr_size, "cannot create signal events");
                goto err;
        }
        evsignal_add(app->sig_term, NULL);
        evsignal_add(app->sig_int, NULL);
        evsignal_add(app->sig_hup, NULL);
        if (app->eos && !app->shards) {
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
        eb_app_free(app);
        return NULL;
}

int eb_app_run(eb_app_t *app)
{
        eb_info("app", "evbridge %s running: %zu source(s), kafka %s%s",
                EB_VERSION, app->cfg->sources_cnt, eb_app_bootstrap(app),
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
        /* 1. No new requests. 2. eb_kafka_free flushes (bounded) and runs
         * every remaining delivery callback, which settles the pipeline's
         * batches and calls back into the poller: both must still exist.
         * 3. Then the poller cancels what curl still has in flight. */
        if (app->poller)
                eb_poller_stop(app->poller);
        eb_shards_free(app->shards);
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
        eb_config_free(app->cfg);
        for (size_t i = 0; i < app->nretired; i++)
                eb_config_free(app->retired[i]);
        free(app->retired);
        free(app);
}
