/*
 * eb_app: the process. Owns the one event_base and wires the modules:
 *
 *   config -> kafka (producer, embedded cluster) -> pipeline (dedupe,
 *   envelope, produce) -> poller (sources) ; signals ; listener
 *
 * Signals are libevent events: SIGTERM/SIGINT drain and stop (exit 0),
 * SIGHUP is logged (reload lands with operations), SIGPIPE is ignored.
 * Nothing here calls exit(); fatal conditions go through eb_app_shutdown().
 *
 * Shutdown order (docs/architecture.md): stop the poller (no new
 * requests), let in-flight requests and publishes settle within
 * shutdown.drain_timeout, flush Kafka, free the poller (curl handles),
 * the pipeline, Kafka (producer, then the embedded cluster), the HTTP
 * client, then the event_base.
 */
#ifndef EB_APP_H
#define EB_APP_H

#include "eb_config.h"
#include "eb_log.h"

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

/** @returns borrowed event_base. */
struct event_base *eb_app_base(eb_app_t *app);

/** @returns borrowed Kafka bootstrap servers in use. */
const char *eb_app_bootstrap(eb_app_t *app);

/** @brief Free everything; NULL is a no-op. */
void eb_app_free(eb_app_t *app);

#endif /* EB_APP_H */
