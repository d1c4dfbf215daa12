#include "eb_httpd.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/bufferevent.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <event2/util.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include "eb_buf.h"
#include "eb_util.h"

#define HTTPD_MAX_ROUTES   8
#define HTTPD_MAX_CODE     600
#define HTTPD_METRICS_MAX  ((size_t)64 * 1024 * 1024)
#define HTTPD_BACKLOG      511
#define HTTPD_PROM_TYPE    "text/plain; version=0.0.4; charset=utf-8"
#define HTTPD_TEXT_TYPE    "text/plain; charset=utf-8"
#define HTTPD_CONN_BUCKETS 4096
#define HTTPD_READ_SLACK   ((size_t)64 * 1024)

struct route {
        char *prefix;
        size_t plen;
        eb_httpd_handler_cb *cb;
        void *opaque;
};

/*
 * One accepted connection, tracked so that a request must arrive whole
 * within http.timeout of its first byte. libevent's own timeout is an
 * idle timeout: a client that sends one byte every few seconds (slowloris)
 * would otherwise hold its connection for ever. libevent 2.1 has no hook
 * for new connections, so the connection is found right after accept
 * (hook_conn), and evhttp's close callback says when it goes.
 */
enum conn_state {
        CONN_IDLE = 0, /* between requests */
        CONN_READING,  /* a request is arriving: the deadline runs */
        CONN_BUSY,     /* a request is with a handler or being answered */
};

struct conn {
        eb_httpd_t *h;
        struct bufferevent *bev;
        struct evhttp_connection *evcon; /* set once hooked */
        struct evbuffer_cb_entry *in_cb;
        struct event *timer; /* first the hook (0 s), then the deadline */
        int hooked;          /* close callback set; no reference held */
        enum conn_state state;
        struct conn *prev, *next; /* h->conns */
        struct conn *hnext;       /* h->buckets[] by evcon */
};

struct eb_httpd_s {
        struct event_base *base;
        const struct eb_config *cfg;
        eb_metrics_t *metrics;
        struct evhttp *http;
        struct evhttp_bound_socket *bound;
        int port;
        eb_httpd_ready_cb *ready;
        void *ready_opaque;
        struct route routes[HTTPD_MAX_ROUTES];
        int nroutes;
        int unsent; /* replies sent, on_complete not yet seen */
        /* Open connections (struct conn), and an index by evcon. */
        struct conn *conns;
        struct conn *buckets[HTTPD_CONN_BUCKETS];
        long nconns;
        uint64_t request_timeouts; /* closed by the request deadline */
        struct timeval timeout;    /* http.timeout */
        size_t read_limit;         /* input held while a request arrives */
        size_t busy_read_limit;    /* ... and while one is answered */
        /* Every response written to a socket, by status code, including
         * the ones libevent writes itself (413, 400, 501). */
        uint64_t responses[HTTPD_MAX_CODE];
};

static const char *reason_phrase(int code)
{
        switch (code) {
        case 200:
                return "OK";
        case 202:
                return "Accepted";
        case 204:
                return "No Content";
        case 400:
                return "Bad Request";
        case 401:
                return "Unauthorized";
        case 403:
                return "Forbidden";
        case 404:
                return "Not Found";
        case 405:
                return "Method Not Allowed";
        case 413:
                return "Payload Too Large";
        case 415:
                return "Unsupported Media Type";
        case 429:
                return "Too Many Requests";
        case 500:
                return "Internal Server Error";
        case 503:
                return "Service Unavailable";
        default:
                return code < 400 ? "OK" : "Error";
        }
}

/* ---- counting responses at the socket -------------------------------- */

/* libevent writes a response's status line with one evbuffer add; this
 * output-buffer callback sees it whoever wrote it (us, or libevent's own
 * 413/400/501 that never reach a handler in 2.1). */
static void on_output(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                      void *arg)
{
        eb_httpd_t *h = arg;
        struct evbuffer_ptr pos;
        char line[13];
        int code;

        if (info->n_added < sizeof(line))
                return;
        if (evbuffer_ptr_set(buf, &pos, info->orig_size, EVBUFFER_PTR_SET) < 0)
                return;
        if (evbuffer_copyout_from(buf, &pos, line, sizeof(line)) !=
            (ev_ssize_t)sizeof(line))
                return;
        if (memcmp(line, "HTTP/1.", 7) || line[8] != ' ' || line[12] != ' ')
                return;
        if (line[9] < '1' || line[9] > '5' || line[10] < '0' ||
            line[10] > '9' || line[11] < '0' || line[11] > '9')
                return;
        code = (line[9] - '0') * 100 + (line[10] - '0') * 10 + line[11] - '0';
        if (code >= 200 && code < HTTPD_MAX_CODE)
                h->responses[code]++;
}

/* ---- connections: the request deadline -------------------------------- */

static size_t conn_bucket(const struct evhttp_connection *evcon)
{
        uintptr_t v = (uintptr_t)evcon;

        return (size_t)((v >> 4) ^ (v >> 16)) % HTTPD_CONN_BUCKETS;
}

static struct conn *conn_find(eb_httpd_t *h, struct evhttp_connection *evcon)
{
        struct conn *c;

        if (!evcon)
                return NULL;
        for (c = h->buckets[conn_bucket(evcon)]; c; c = c->hnext)
                if (c->evcon == evcon)
                        return c;
        return NULL;
}

static void conn_unindex(struct conn *c)
{
        struct conn **pp;

        if (!c->evcon)
                return;
        for (pp = &c->h->buckets[conn_bucket(c->evcon)]; *pp;
             pp = &(*pp)->hnext) {
                if (*pp == c) {
                        *pp = c->hnext;
                        break;
                }
        }
}

/* Forget @p c. @p bev_alive: the bufferevent may still be touched (our
 * input callback is removed and our reference, if any, dropped). */
static void conn_free(struct conn *c, int bev_alive)
{
        eb_httpd_t *h = c->h;

        conn_unindex(c);
        if (c->prev)
                c->prev->next = c->next;
        else
                h->conns = c->next;
        if (c->next)
                c->next->prev = c->prev;
        h->nconns--;
        if (c->timer)
                event_free(c->timer);
        if (bev_alive && c->in_cb)
                evbuffer_remove_cb_entry(bufferevent_get_input(c->bev),
                                         c->in_cb);
        if (bev_alive && !c->hooked)
                bufferevent_decref(c->bev);
        free(c);
}

static void conn_start_reading(struct conn *c)
{
        c->state = CONN_READING;
        evtimer_add(c->timer, &c->h->timeout);
}

/* evhttp is closing the connection (it frees it right after). */
static void on_conn_close(struct evhttp_connection *evcon, void *arg)
{
        struct conn *c = arg;

        (void)evcon;
        conn_free(c, 1);
}

/* Find the evhttp connection that owns our bufferevent and ask it to tell
 * us when it closes. Runs right after accept, when evhttp has wired the
 * bufferevent (its callback argument is the connection; checked through
 * the public evhttp_connection_get_bufferevent). */
static void hook_conn(struct conn *c)
{
        bufferevent_data_cb rcb = NULL, wcb = NULL;
        bufferevent_event_cb ecb = NULL;
        struct evhttp_connection *evcon;
        void *arg = NULL;

        if (c->hooked)
                return;
        bufferevent_getcb(c->bev, &rcb, &wcb, &ecb, &arg);
        evcon = arg;
        if ((!rcb && !wcb && !ecb) || !evcon) {
                /* evhttp dropped it during accept (out of memory). */
                conn_free(c, 1);
                return;
        }
        if (evhttp_connection_get_bufferevent(evcon) != c->bev) {
                static int warned;
                if (!warned++)
                        eb_warn("httpd",
                                "cannot track connections with this "
                                "libevent; slow requests are only bounded by "
                                "the idle timeout");
                conn_free(c, 1);
                return;
        }
        c->evcon = evcon;
        c->hnext = c->h->buckets[conn_bucket(evcon)];
        c->h->buckets[conn_bucket(evcon)] = c;
        evhttp_connection_set_closecb(evcon, on_conn_close, c);
        c->hooked = 1;
        bufferevent_decref(c->bev); /* the close callback guards it now */
        evtimer_del(c->timer);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)))
                conn_start_reading(c);
}

static void on_conn_timer(evutil_socket_t fd, short what, void *arg)
{
        struct conn *c = arg;
        evutil_socket_t sfd;

        (void)fd;
        (void)what;
        if (!c->hooked) {
                hook_conn(c);
                return;
        }
        if (c->state != CONN_READING)
                return;
        /* The request did not arrive whole in time. Shutting the socket
         * down makes evhttp see the client hang up: it drops the
         * connection through its normal path (a request already with a
         * handler is detached, never freed under it). */
        c->h->request_timeouts++;
        c->state = CONN_IDLE;
        sfd = bufferevent_getfd(c->bev);
        if (sfd >= 0)
                (void)shutdown(sfd, SHUT_RDWR);
        eb_debug("httpd", "closed a connection: request not received "
                          "within http.timeout");
}

/* Bytes arrived: the first byte of a request starts its deadline. */
static void on_input(struct evbuffer *buf, const struct evbuffer_cb_info *info,
                     void *arg)
{
        struct conn *c = arg;

        (void)buf;
        if (!info->n_added)
                return;
        if (!c->hooked) {
                hook_conn(c); /* may free c */
                return;
        }
        if (c->state == CONN_IDLE)
                conn_start_reading(c);
}

/* A request is complete and goes to a handler: its deadline is met. */
static void conn_request_begins(eb_httpd_t *h, struct evhttp_request *req)
{
        struct conn *c = conn_find(h, evhttp_request_get_connection(req));

        if (!c)
                return;
        c->state = CONN_BUSY;
        evtimer_del(c->timer);
        /* While the answer is pending, evhttp reads only to see the
         * client hang up: whatever a client pipelines meanwhile (without
         * reading its answers) would pile up. Hold little of it. */
        bufferevent_setwatermark(c->bev, EV_READ, 0, h->busy_read_limit);
}

/* Its answer is written: the next request's clock starts with its first
 * byte (already here when the client pipelines). */
static void conn_request_ends(eb_httpd_t *h, struct evhttp_request *req)
{
        struct conn *c = conn_find(h, evhttp_request_get_connection(req));

        if (!c || c->state != CONN_BUSY)
                return;
        c->state = CONN_IDLE;
        bufferevent_setwatermark(c->bev, EV_READ, 0, h->read_limit);
        if (evbuffer_get_length(bufferevent_get_input(c->bev)))
                conn_start_reading(c);
}

static struct bufferevent *make_bev(struct event_base *base, void *arg)
{
        static const struct timeval now = {0, 0};
        eb_httpd_t *h = arg;
        struct bufferevent *bev =
                bufferevent_socket_new(base, -1, BEV_OPT_CLOSE_ON_FREE);
        struct conn *c;

        if (!bev)
                return NULL; /* evhttp makes its own (then uncounted) */
        evbuffer_add_cb(bufferevent_get_output(bev), on_output, arg);
        /* evhttp keeps a request's body in this buffer until the whole
         * body is in, so it may hold headers and body; past that, stop
         * reading until evhttp takes some (see conn_request_begins). */
        bufferevent_setwatermark(bev, EV_READ, 0, h->read_limit);
        c = calloc(1, sizeof(*c));
        if (!c)
                return bev; /* served, without a request deadline */
        c->h = h;
        c->bev = bev;
        c->timer = evtimer_new(base, on_conn_timer, c);
        c->in_cb = evbuffer_add_cb(bufferevent_get_input(bev), on_input, c);
        if (!c->timer || !c->in_cb) {
                if (c->in_cb)
                        evbuffer_remove_cb_entry(bufferevent_get_input(bev),
                                                 c->in_cb);
                if (c->timer)
                        event_free(c->timer);
                free(c);
                return bev;
        }
        /* Keep the bufferevent alive until the hook has run, whatever
         * evhttp does with it in between. */
        bufferevent_incref(bev);
        c->next = h->conns;
        if (c->next)
                c->next->prev = c;
        h->conns = c;
        h->nconns++;
        evtimer_add(c->timer, &now);
        return bev;
}

static void collect(struct eb_prom *w, void *opaque)
{
        eb_httpd_t *h = opaque;
        char code[8];
        int i;

        eb_prom_family(w, "evbridge_http_responses_total", "counter",
                       "HTTP responses written by the listener, by status "
                       "code (also those libevent writes itself: 413 over "
                       "http.max_body, 400 unparseable request).");
        for (i = 200; i < HTTPD_MAX_CODE; i++) {
                if (!h->responses[i])
                        continue;
                snprintf(code, sizeof(code), "%d", i);
                eb_prom_sample(w, NULL, (const char *[]){"code", code, NULL},
                               (double)h->responses[i]);
        }
        eb_prom_family(w, "evbridge_http_connections", "gauge",
                       "Connections open on the listener now.");
        eb_prom_sample(w, NULL, NULL, (double)h->nconns);
        eb_prom_family(w, "evbridge_http_request_timeouts_total", "counter",
                       "Connections closed because a request did not arrive "
                       "whole within http.timeout of its first byte.");
        eb_prom_sample(w, NULL, NULL, (double)h->request_timeouts);
}

/* ---- replies --------------------------------------------------------- */

static void on_complete(struct evhttp_request *req, void *arg)
{
        eb_httpd_t *h = arg;

        if (h->unsent > 0)
                h->unsent--;
        conn_request_ends(h, req);
}

void eb_httpd_reply(eb_httpd_t *h, struct evhttp_request *req, int code,
                    const char *const *headers, const char *content_type,
                    const char *body, size_t len)
{
        struct evkeyvalq *out = evhttp_request_get_output_headers(req);
        struct evbuffer *buf = evbuffer_new();
        size_t i;

        if (content_type)
                evhttp_add_header(out, "Content-Type", content_type);
        for (i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                evhttp_add_header(out, headers[i], headers[i + 1]);
        evhttp_add_header(out, "Cache-Control", "no-store");
        if (buf && body && len &&
            evhttp_request_get_command(req) != EVHTTP_REQ_HEAD)
                evbuffer_add(buf, body, len);
        /* A request whose client has gone has no connection: evhttp frees
         * it on send and nothing is written, so nothing to wait for. */
        if (evhttp_request_get_connection(req)) {
                h->unsent++;
                evhttp_request_set_on_complete_cb(req, on_complete, h);
        }
        evhttp_send_reply(req, code, reason_phrase(code), buf);
        if (buf)
                evbuffer_free(buf);
}

static void reply_text(eb_httpd_t *h, struct evhttp_request *req, int code,
                       const char *const *headers, const char *text)
{
        eb_httpd_reply(h, req, code, headers, HTTPD_TEXT_TYPE, text,
                       strlen(text));
}

/* ---- built-in endpoints ---------------------------------------------- */

static int is_get(struct evhttp_request *req)
{
        enum evhttp_cmd_type m = evhttp_request_get_command(req);

        return m == EVHTTP_REQ_GET || m == EVHTTP_REQ_HEAD;
}

static void serve_metrics(eb_httpd_t *h, struct evhttp_request *req)
{
        struct eb_buf out;
        int rc = 0;

        eb_buf_init(&out, HTTPD_METRICS_MAX);
        if (h->metrics)
                rc = eb_metrics_render(h->metrics, &out);
        if (rc) {
                eb_warn("httpd", "/metrics: rendering failed: %s",
                        strerror(-rc));
                reply_text(h, req, 500, NULL, "metrics unavailable\n");
        } else {
                eb_httpd_reply(h, req, 200, NULL, HTTPD_PROM_TYPE,
                               out.data ? out.data : "", out.len);
        }
        eb_buf_fini(&out);
}

int eb_httpd_ready(eb_httpd_t *h, const char **why)
{
        const char *dummy = NULL;

        if (!why)
                why = &dummy;
        *why = NULL;
        if (!h->ready)
                return 1;
        return h->ready(h->ready_opaque, why);
}

static void on_request(struct evhttp_request *req, void *arg)
{
        static const char *const allow_get[] = {"Allow", "GET, HEAD", NULL};
        eb_httpd_t *h = arg;
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        const char *path = uri ? evhttp_uri_get_path(uri) : NULL;
        const char *why = NULL;
        char msg[1024];
        int i;

        conn_request_begins(h, req);
        if (!path || !*path)
                path = "/";
        for (i = 0; i < h->nroutes; i++) {
                struct route *r = &h->routes[i];
                if (!strncmp(path, r->prefix, r->plen)) {
                        r->cb(h, req, path + r->plen, r->opaque);
                        return;
                }
        }
        if (!strcmp(path, "/healthz") || !strcmp(path, "/readyz") ||
            !strcmp(path, "/metrics")) {
                if (!is_get(req)) {
                        reply_text(h, req, 405, allow_get,
                                   "method not allowed\n");
                        return;
                }
                if (path[1] == 'h') {
                        reply_text(h, req, 200, NULL, "ok\n");
                } else if (path[1] == 'r') {
                        if (!eb_httpd_ready(h, &why)) {
                                snprintf(msg, sizeof(msg), "not ready: %s\n",
                                         why ? why : "starting");
                                reply_text(h, req, 503, NULL, msg);
                        } else if (why) {
                                /* ready, with a detail (a stopped source) */
                                snprintf(msg, sizeof(msg), "ready; %s\n", why);
                                reply_text(h, req, 200, NULL, msg);
                        } else {
                                reply_text(h, req, 200, NULL, "ready\n");
                        }
                } else {
                        serve_metrics(h, req);
                }
                return;
        }
        reply_text(h, req, 404, NULL, "not found\n");
}

/* ---- set-up ---------------------------------------------------------- */

static int bind_listener(const struct eb_config *cfg, char *errstr,
                         size_t errstr_size)
{
        struct addrinfo hints, *res = NULL, *ai;
        const char *host = cfg->listen_host;
        char port[16];
        int fd = -1, err = 0, gai, one = 1;

        memset(&hints, 0, sizeof(hints));
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_PASSIVE | AI_NUMERICSERV;
        snprintf(port, sizeof(port), "%d", cfg->listen_port);
        gai = getaddrinfo(host && *host ? host : NULL, port, &hints, &res);
        if (gai) {
                snprintf(errstr, errstr_size,
                         "http.listen: cannot resolve %s: %s", cfg->listen,
                         gai_strerror(gai));
                return -1;
        }
        for (ai = res; ai; ai = ai->ai_next) {
                fd = socket(ai->ai_family,
                            ai->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                            ai->ai_protocol);
                if (fd < 0) {
                        err = errno;
                        continue;
                }
                (void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one,
                                 sizeof(one));
                if (bind(fd, ai->ai_addr, ai->ai_addrlen) == 0 &&
                    listen(fd, HTTPD_BACKLOG) == 0)
                        break;
                err = errno;
                close(fd);
                fd = -1;
        }
        freeaddrinfo(res);
        if (fd < 0)
                snprintf(errstr, errstr_size, "http.listen: cannot bind %s: %s",
                         cfg->listen, strerror(err ? err : EADDRNOTAVAIL));
        return fd;
}

static int bound_port(int fd)
{
        struct sockaddr_storage ss;
        socklen_t len = sizeof(ss);

        if (getsockname(fd, (struct sockaddr *)&ss, &len) != 0)
                return -1;
        if (ss.ss_family == AF_INET)
                return ntohs(((struct sockaddr_in *)&ss)->sin_port);
        if (ss.ss_family == AF_INET6)
                return ntohs(((struct sockaddr_in6 *)&ss)->sin6_port);
        return -1;
}

eb_httpd_t *eb_httpd_new(struct event_base *base, const struct eb_config *cfg,
                         eb_metrics_t *metrics, char *errstr,
                         size_t errstr_size)
{
        eb_httpd_t *h = eb_xcalloc(1, sizeof(*h));
        struct timeval tv;
        int fd = -1;

        h->base = base;
        h->cfg = cfg;
        h->http = evhttp_new(base);
        if (!h->http) {
                snprintf(errstr, errstr_size,
                         "http.listen: cannot create the HTTP server");
                goto err;
        }
        evhttp_set_max_body_size(h->http, (ev_ssize_t)cfg->http_max_body);
        evhttp_set_max_headers_size(h->http, (ev_ssize_t)cfg->http_max_headers);
        tv.tv_sec = (time_t)(cfg->http_timeout_ms / 1000);
        tv.tv_usec = (suseconds_t)(cfg->http_timeout_ms % 1000) * 1000;
        evhttp_set_timeout_tv(h->http, &tv);
        h->timeout = tv;
        h->read_limit =
                cfg->http_max_headers + cfg->http_max_body + HTTPD_READ_SLACK;
        h->busy_read_limit = cfg->http_max_headers + HTTPD_READ_SLACK;
        /* Methods we answer ourselves (405 with Allow); anything else
         * (TRACE, CONNECT) gets libevent's 501. */
        evhttp_set_allowed_methods(
                h->http, EVHTTP_REQ_GET | EVHTTP_REQ_POST | EVHTTP_REQ_HEAD |
                                 EVHTTP_REQ_PUT | EVHTTP_REQ_DELETE |
                                 EVHTTP_REQ_OPTIONS | EVHTTP_REQ_PATCH);
        evhttp_set_gencb(h->http, on_request, h);
        evhttp_set_bevcb(h->http, make_bev, h);
        fd = bind_listener(cfg, errstr, errstr_size);
        if (fd < 0)
                goto err;
        h->port = bound_port(fd);
        h->bound = evhttp_accept_socket_with_handle(h->http, fd);
        if (!h->bound) {
                snprintf(errstr, errstr_size,
                         "http.listen: cannot listen on %s", cfg->listen);
                close(fd);
                goto err;
        }
        eb_httpd_set_metrics(h, metrics);
        eb_info("httpd", "listening on %s (port %d)", cfg->listen, h->port);
        return h;
err:
        eb_httpd_free(h);
        return NULL;
}

void eb_httpd_set_metrics(eb_httpd_t *h, eb_metrics_t *metrics)
{
        if (h->metrics)
                eb_metrics_remove_collector(h->metrics, collect, h);
        h->metrics = metrics;
        if (metrics)
                eb_metrics_add_collector(metrics, collect, h);
}

int eb_httpd_port(const eb_httpd_t *h)
{
        return h->port;
}

void eb_httpd_set_ready(eb_httpd_t *h, eb_httpd_ready_cb *cb, void *opaque)
{
        h->ready = cb;
        h->ready_opaque = opaque;
}

int eb_httpd_route(eb_httpd_t *h, const char *prefix, eb_httpd_handler_cb *cb,
                   void *opaque)
{
        struct route *r;

        if (h->nroutes >= HTTPD_MAX_ROUTES)
                return -ENOSPC;
        r = &h->routes[h->nroutes++];
        r->prefix = eb_xstrdup(prefix);
        r->plen = strlen(prefix);
        r->cb = cb;
        r->opaque = opaque;
        return 0;
}

void eb_httpd_stop(eb_httpd_t *h)
{
        if (h->bound) {
                evhttp_del_accept_socket(h->http, h->bound);
                h->bound = NULL;
                eb_info("httpd", "stopped accepting connections");
        }
}

int eb_httpd_unsent(const eb_httpd_t *h)
{
        return h->unsent;
}

void eb_httpd_free(eb_httpd_t *h)
{
        int i;

        if (!h)
                return;
        /* evhttp_free closes every connection and frees their requests;
         * no callback of ours runs after it. Each connection's close
         * callback forgets it; what is left was never hooked (it still
         * holds a reference to its bufferevent) or, defensively, was not
         * reported closed (then its bufferevent is not touched). */
        if (h->http)
                evhttp_free(h->http);
        while (h->conns)
                conn_free(h->conns, !h->conns->hooked);
        eb_httpd_set_metrics(h, NULL);
        for (i = 0; i < h->nroutes; i++)
                free(h->routes[i].prefix);
        free(h);
}
