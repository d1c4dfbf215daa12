/*
 * eb_app: the process. Owns the one event_base and wires the modules:
 *
 *   config -> kafka (producer, embedded cluster) -> pipeline (dedupe,
 *   envelope, produce) -> poller (sources) ; signals ; listener
 *
 * Signals are libevent events: SIGTERM/SIGINT drain and stop (exit 0),
 * SIGHUP reloads the configuration file (eb_app_reload()), SIGPIPE is
 * ignored. Nothing here calls exit(); fatal conditions go through
 * eb_app_shutdown().
 *
 * The shutdown order, and why, is in docs/architecture.md "Shutdown
 * order"; eb_app_free() follows it.
 */
#ifndef EB_APP_H
#define EB_APP_H

#include "eb_config.h"
#include "eb_log.h"
#include "eb_metrics.h"

struct event_base;
typedef struct eb_app_s eb_app_t;

/**
 * @brief Build the application from @p cfg (takes ownership of it on
 * success). Connects nothing yet except the embedded cluster.
 * @returns new app, or NULL with @p errstr (the caller still owns cfg).
 */
eb_app_t *eb_app_new(struct eb_config *cfg, char *errstr, size_t errstr_size);

/** @brief Run the loop until shutdown. @returns the exit code (0 after a
 *  clean drain, 1 after a fatal error). */
int eb_app_run(eb_app_t *app);

/** @brief Begin a graceful stop (drain, flush, break the loop). @p reason
 *  is logged; @p fatal makes eb_app_run() return 1. */
void eb_app_shutdown(eb_app_t *app, const char *reason, int fatal);

/**
 * @brief Reload the configuration file (what SIGHUP does): sources added,
 * removed or changed take effect at once, without dropping checkpoints or
 * dedupe state and without restarting the Kafka clients. Settings that
 * need a restart (kafka.*, http.*, dedupe.*) are reported, not applied.
 * A broken file is reported and changes nothing. The configuration it
 * replaces is freed once nothing started from it is in flight; the one
 * the process started with is kept until eb_app_free() (the Kafka
 * clients, the listener and the shards use it).
 */
void eb_app_reload(eb_app_t *app);

/** @returns borrowed event_base. */
struct event_base *eb_app_base(eb_app_t *app);

/** @returns borrowed Kafka bootstrap servers in use. */
const char *eb_app_bootstrap(eb_app_t *app);

/**
 * @returns borrowed metrics registry (never NULL), valid until
 * eb_app_free(). The application's collectors (eb_metrics_collect) are
 * registered in it; other modules (the HTTP listener) may add their own
 * and render it with eb_metrics_render() on the loop thread.
 */
eb_metrics_t *eb_app_metrics(eb_app_t *app);

/** @returns the HTTP listener's bound port (http.listen; the real one
 *  when port 0 was asked for), or -1 without a listener. */
int eb_app_http_port(eb_app_t *app);

/** @brief Free everything; NULL is a no-op. */
void eb_app_free(eb_app_t *app);

#endif /* EB_APP_H */
