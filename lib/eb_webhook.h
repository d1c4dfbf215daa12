/*
 * eb_webhook: webhook intake, POST /webhooks/<source>[/<token>].
 *
 *   route -> method -> ready? -> authenticate (eb_webhook_sig scheme)
 *         -> content type -> parse -> what the provider declares
 *         (struct eb_provider_webhook):
 *      events:        normalize with the adapter -> sink publish (dedupe,
 *                     envelope, Kafka) -> hold the request until the
 *                     publish settles -> 200, or 503 + Retry-After
 *      poll triggers: the provider checks the body's shape -> poll the
 *                     source (at most one per second, the rest deferred
 *                     and coalesced) -> 200 at once (Kommo: its webhooks
 *                     carry no id and no signature)
 *
 * Delivery contract: a webhook is answered 2xx only once its event is in
 * Kafka (the publish's done callback with 0), or known to be a duplicate.
 * Kafka slow or down, its queue full, more than http.max_held requests
 * held, or no answer within http.webhook_deadline: 503 with Retry-After,
 * so the platform retries. A retry that arrives while the first delivery
 * of the same event (same dedupe key) is still in flight does not publish
 * again: it waits on the first publish's outcome.
 *
 * Held requests and publishes are separate objects: a publish (one per
 * distinct event in flight) lists the requests waiting on it; a request
 * answered on its deadline leaves that list and is freed, and the publish
 * lives on until the sink calls back, touching no answered request.
 *
 * Errors and their reasons (evbridge_webhook_requests_total{source,
 * status,reason}): 400 malformed / invalid_event, 401 signature_* /
 * timestamp_* / token_*, 404 unknown_source / webhook_disabled /
 * not_found, 405 method_not_allowed, 413 body_too_large, 415
 * unsupported_content_type, 503 not_ready / overloaded / queue_full /
 * deadline / kafka_error / shutting_down / trigger_failed /
 * internal_error; 200 published / duplicate / poll_trigger. Log lines
 * name the source, status and reason only (never a signature, token or
 * body), at most one per source per second.
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_WEBHOOK_H
#define EB_WEBHOOK_H

#include <stddef.h>
#include <stdint.h>

#include "eb_config.h"
#include "eb_httpd.h"
#include "eb_log.h"
#include "eb_metrics.h"
#include "eb_pipeline.h"
#include "eb_poller.h"

struct event_base;
typedef struct eb_webhook_s eb_webhook_t;

/** What the intake talks to. Everything is borrowed. */
struct eb_webhook_deps {
        /* Where events go (eb_pipeline_sink()). Required. */
        struct eb_sink sink;
        /* Optional: the pipeline behind the sink, to tell a duplicate
         * (answered 200 "duplicate") from a fresh publish in metrics. */
        eb_pipeline_t *pipeline;
        /* Poll @p source now (poll triggers): eb_poller_trigger(). NULL:
         * triggers are answered 503 trigger_failed. @returns 0 or -errno. */
        int (*trigger)(void *opaque, const char *source);
        void *trigger_opaque;
        /* Readiness (NULL: always ready): @returns 1, or 0 with a static
         * reason in @p why. Not ready: 503 not_ready. */
        int (*ready)(void *opaque, const char **why);
        void *ready_opaque;
};

/** Deferred poll triggers: at most one poll trigger per source per this. */
#define EB_WEBHOOK_TRIGGER_INTERVAL_MS 1000
/** Retry-After (seconds) on a 503. */
#define EB_WEBHOOK_RETRY_AFTER_S 5

/**
 * @brief Check every enabled source's webhook block (a disabled source's
 * block is inert): the provider takes webhooks,
 * the scheme (webhook.scheme or the provider's default) exists, and its
 * secret or token is present and well-formed.
 * @returns 0 or -EINVAL with "sources[N].webhook.<key>: why" in @p errstr
 * (never quoting a secret).
 */
int eb_webhook_check_config(const struct eb_config *cfg, char *errstr,
                            size_t errstr_size);

/**
 * @brief Create the intake for every source of @p cfg (borrowed; must
 * outlive it). Sources without a webhook block, or disabled, refuse
 * webhooks with 404.
 * @param deps copied; what it points to is borrowed.
 * @returns new intake, or NULL with @p errstr (as eb_webhook_check_config).
 */
eb_webhook_t *eb_webhook_new(struct event_base *base,
                             const struct eb_config *cfg,
                             const struct eb_webhook_deps *deps, char *errstr,
                             size_t errstr_size);

/**
 * @brief Switch to the sources of @p cfg (SIGHUP reload; borrowed, must
 * stay alive until the next reload has replaced it and
 * eb_webhook_retired() no longer counts its table). Sources that keep
 * their name keep their counters; the old table stays alive while held
 * requests or publishes point into it, and is freed at the next reload
 * or webhook after that. The global http.* limits are not reloaded.
 * @returns 0, or -EINVAL with @p errstr (the old sources stay in force).
 */
int eb_webhook_reload(eb_webhook_t *wh, const struct eb_config *cfg,
                      char *errstr, size_t errstr_size);

/**
 * @brief The eb_httpd route handler for "/webhooks/" (@p opaque is the
 * intake). Answers @p req now, or holds it until its publish settles or
 * its deadline passes.
 */
void eb_webhook_handle(eb_httpd_t *h, struct evhttp_request *req,
                       const char *rest, void *opaque);

/**
 * @brief Shutdown step: from now on refuse new webhooks (503
 * shutting_down), answer every held request 503 (a held request is by
 * definition not settled: a settled one was answered 200 at once), and
 * cancel deferred triggers. Publishes still pending stay tracked until
 * their callbacks run (eb_kafka_free() runs them all).
 */
void eb_webhook_shutdown(eb_webhook_t *wh);

/** @returns source tables replaced by reloads and not freed yet. */
size_t eb_webhook_retired(const eb_webhook_t *wh);

/** @returns requests held (unanswered) now. */
int eb_webhook_held(const eb_webhook_t *wh);

/** @returns publishes whose done callback has not run yet. */
int eb_webhook_pending(const eb_webhook_t *wh);

/**
 * @returns how many requests of @p source ("" for unknown sources) were
 * answered with @p reason (e.g. "published", "signature_mismatch").
 */
uint64_t eb_webhook_count(const eb_webhook_t *wh, const char *source,
                          const char *reason);

/** @brief Metrics collector (@p opaque is the intake):
 *  evbridge_webhook_requests_total, _held, _publishes_pending,
 *  _poll_triggers_total, _response_seconds. */
void eb_webhook_collect(struct eb_prom *w, void *opaque);

/**
 * @brief Free; NULL is a no-op. Call eb_webhook_shutdown() first, and
 * only once no sink callback can run any more (after eb_kafka_free()):
 * publishes still pending are dropped, and their callbacks must never
 * run afterwards.
 */
void eb_webhook_free(eb_webhook_t *wh);

#endif /* EB_WEBHOOK_H */
