/*
 * eb_http: asynchronous HTTP client on the application's event_base.
 *
 * libcurl's multi socket API driven by libevent (the pattern in
 * docs/architecture.md): one CURLM, one timer, one event per socket.
 * Every transfer has a timeout, a connect timeout and a hard body limit;
 * connections are kept alive and reused per host; gzip/deflate responses
 * are decoded transparently.
 *
 * Thread context: everything on the loop thread. Completion callbacks run
 * from the loop, never from inside eb_http_get(); a callback may start new
 * requests or cancel others.
 */
#ifndef EB_HTTP_H
#define EB_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "eb_log.h"

struct event_base;
typedef struct eb_http_s eb_http_t;

struct eb_http_request {
        const char *url;
        const char *method; /* NULL: GET */
        const char *body;   /* request body (POST), may be NULL */
        size_t body_len;
        const char *const *headers; /* NULL-terminated "Name: value" */
        int64_t timeout_ms;         /* whole transfer; 0: 30 s */
        int64_t connect_timeout_ms; /* 0: 5 s */
        size_t max_body;            /* response cap; 0: 16 MiB */
        const char *protocols;      /* NULL: "http,https" */
};

/** A finished transfer. Everything is borrowed and valid only during the
 *  callback. */
struct eb_http_result {
        int err;            /* 0, -ETIMEDOUT, -ECONNREFUSED, -ECONNRESET,
                             * -E2BIG (body over the cap), -EPROTO
                             * (bad response / decoding), -ECANCELED,
                             * -EHOSTUNREACH (resolve), -EIO (other) */
        const char *errstr; /* curl's message when err != 0, else "" */
        long status;        /* HTTP status, 0 if none */
        const char *body;   /* NUL-terminated, "" if none */
        size_t body_len;
        int64_t elapsed_us;
        const void *priv_; /* header store: use eb_http_result_header() */
};

typedef void(eb_http_cb)(const struct eb_http_result *res, void *opaque);

/**
 * @brief Create a client on @p base. curl_global_init() must have been
 * called (eb_app does it before any thread exists).
 * @returns new client, or NULL with a message in @p errstr.
 */
eb_http_t *eb_http_new(struct event_base *base, char *errstr,
                       size_t errstr_size);

/** @brief Cap total and per-host connections (0: unlimited). */
void eb_http_set_limits(eb_http_t *http, long max_total, long max_per_host);

/**
 * @brief Start a request; @p cb runs exactly once when it ends (unless it
 * is cancelled first).
 * @returns 0 and a transfer id in @p idp (may be NULL), or -ENOMEM/-EINVAL.
 */
int eb_http_start(eb_http_t *http, const struct eb_http_request *req,
                  eb_http_cb *cb, void *opaque, uint64_t *idp) EB_WUR;

/** @brief Cancel transfer @p id; its callback will not run. Unknown ids
 *  are ignored. */
void eb_http_cancel(eb_http_t *http, uint64_t id);

/** @returns the number of transfers in flight. */
int eb_http_inflight(const eb_http_t *http);

/**
 * @brief Look up a response header (case-insensitive name).
 * @returns borrowed value (trimmed), valid until the next call, or NULL.
 */
const char *eb_http_result_header(const struct eb_http_result *res,
                                  const char *name);

/** @brief Cancel everything (no callbacks) and free; NULL is a no-op. Must
 *  run while the event_base is still alive. */
void eb_http_free(eb_http_t *http);

#endif /* EB_HTTP_H */
