/*
 * eb_httpd: the daemon's HTTP listener (evhttp on the app's event_base).
 *
 *   GET  /healthz            200 "ok" while the loop runs
 *   GET  /readyz             200 when the app's ready callback says so,
 *                            else 503 with the reason
 *   GET  /metrics            Prometheus text (eb_metrics_render)
 *   *    <prefix>...         a registered route (POST /webhooks/<source>)
 *   anything else            404; a known path with a wrong method: 405
 *                            with an Allow header
 *
 * Limits from the config: http.max_body (evhttp answers 413 itself before
 * any handler runs), http.max_headers, http.timeout (read/write idle
 * timeout per connection). libevent 2.1 answers those 413s (and 400s for
 * unparseable requests) without calling us, so every response, whoever
 * wrote it, is also counted by status code at the socket
 * (evbridge_http_responses_total{code}).
 *
 * Hostile clients: http.timeout is also the longest a request may take to
 * arrive whole from its first byte, so clients that dribble bytes are
 * closed. Unparsed input per connection is capped at max_headers +
 * max_body + 64 KiB, and at max_headers + 64 KiB while an answer is
 * pending, so clients that pipeline without reading cannot pile requests
 * up. Open connections and deadline closes are in /metrics
 * (evbridge_http_connections, evbridge_http_request_timeouts_total).
 *
 * The listener is bound in eb_httpd_new(), so a taken port is an error at
 * start-up: "http.listen: cannot bind 0.0.0.0:8080: Address already in
 * use". Port 0 takes an ephemeral port; eb_httpd_port() says which.
 *
 * Thread context: the loop thread only.
 */
#ifndef EB_HTTPD_H
#define EB_HTTPD_H

#include <stddef.h>

#include "eb_config.h"
#include "eb_log.h"
#include "eb_metrics.h"

struct event_base;
struct evhttp_request;
typedef struct eb_httpd_s eb_httpd_t;

/**
 * @brief A route handler. It must answer @p req exactly once, now or
 * later (a held request stays valid until answered, even if the client
 * has gone; docs/shared style item 15), with eb_httpd_reply().
 * @param rest the raw path after the route's prefix (no query), borrowed
 * for the call.
 */
typedef void eb_httpd_handler_cb(eb_httpd_t *h, struct evhttp_request *req,
                                 const char *rest, void *opaque);

/**
 * @brief Readiness: @returns 1 when ready; else 0 and may set @p why to a
 * static string for the 503 body. Ready with @p why set: 200 "ready;
 * <why>" (a detail, e.g. a source stopped for good).
 */
typedef int eb_httpd_ready_cb(void *opaque, const char **why);

/**
 * @brief Bind cfg->listen_host:cfg->listen_port and serve on @p base.
 * @param cfg borrowed; must outlive the listener.
 * @param metrics borrowed registry for /metrics (may be NULL: /metrics is
 * then empty); the listener registers its own collector in it.
 * @returns new listener, or NULL with @p errstr ("http.listen: ...").
 */
eb_httpd_t *eb_httpd_new(struct event_base *base, const struct eb_config *cfg,
                         eb_metrics_t *metrics, char *errstr,
                         size_t errstr_size);

/**
 * @brief Serve /metrics from @p metrics (borrowed, may be NULL), moving
 * the listener's own collector there from the previous registry. Call
 * with NULL before freeing the registry if the listener outlives it.
 */
void eb_httpd_set_metrics(eb_httpd_t *h, eb_metrics_t *metrics);

/** @returns the bound TCP port (the real one when 0 was asked for). */
int eb_httpd_port(const eb_httpd_t *h);

/** @brief Set the /readyz callback (NULL: always ready). */
void eb_httpd_set_ready(eb_httpd_t *h, eb_httpd_ready_cb *cb, void *opaque);

/** @returns the ready callback's answer (1 without a callback); @p why
 *  may be NULL. */
int eb_httpd_ready(eb_httpd_t *h, const char **why);

/**
 * @brief Route every path starting with @p prefix (e.g. "/webhooks/",
 * copied) to @p cb, whatever the method. At most 8 routes.
 * @returns 0 or -ENOSPC.
 */
int eb_httpd_route(eb_httpd_t *h, const char *prefix, eb_httpd_handler_cb *cb,
                   void *opaque);

/**
 * @brief Answer @p req: status @p code (standard reason phrase), optional
 * extra headers (@p headers: NULL-terminated name, value, ... list, may be
 * NULL), a content type (NULL: none) and a body of @p len bytes (copied;
 * may be NULL). After this @p req must not be used.
 */
void eb_httpd_reply(eb_httpd_t *h, struct evhttp_request *req, int code,
                    const char *const *headers, const char *content_type,
                    const char *body, size_t len);

/** @brief Stop accepting connections; open ones are still served. */
void eb_httpd_stop(eb_httpd_t *h);

/** @returns replies handed to evhttp and not yet fully written (the drain
 *  waits for them, bounded, before the listener is freed). */
int eb_httpd_unsent(const eb_httpd_t *h);

/** @brief Close every connection and free; NULL is a no-op. Requests
 *  still unanswered are dropped: answer them first. */
void eb_httpd_free(eb_httpd_t *h);

#endif /* EB_HTTPD_H */
