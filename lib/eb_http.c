#include "eb_http.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_buf.h"
#include "eb_time.h"
#include "eb_util.h"

#define EB_HTTP_MAX_HEADER_BYTES (64 * 1024)
#define EB_HTTP_MAX_HEADERS      64

struct hdr {
        char *name; /* points into xfer->hdrbuf copies */
        char *value;
};

struct xfer {
        struct xfer *next, *prev;
        eb_http_t *http;
        CURL *easy;
        uint64_t id;
        eb_http_cb *cb;
        void *opaque;
        struct curl_slist *headers;
        struct eb_buf body;
        struct eb_buf hdrraw; /* the last response's header lines */
        int too_big;
        int64_t started_us;
        char err[CURL_ERROR_SIZE];
};

struct sockctx {
        struct event *ev;
        eb_http_t *http;
};

struct eb_http_s {
        struct event_base *base;
        CURLM *multi;
        struct event *timer;
        struct xfer *xfers; /* every easy handle we own, for teardown */
        int inflight;
        uint64_t next_id;
};

static void check_multi_info(eb_http_t *http);

static int map_curl_err(CURLcode rc, int too_big)
{
        if (too_big)
                return -E2BIG;
        switch (rc) {
        case CURLE_OK:
                return 0;
        case CURLE_OPERATION_TIMEDOUT:
                return -ETIMEDOUT;
        case CURLE_COULDNT_CONNECT:
                return -ECONNREFUSED;
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
                return -EHOSTUNREACH;
        case CURLE_RECV_ERROR:
        case CURLE_SEND_ERROR:
        case CURLE_PARTIAL_FILE:
        case CURLE_GOT_NOTHING:
                return -ECONNRESET;
        case CURLE_BAD_CONTENT_ENCODING:
        case CURLE_WEIRD_SERVER_REPLY:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return -EPROTO;
        case CURLE_WRITE_ERROR:
                return -E2BIG;
        default:
                return -EIO;
        }
}

/* ---- libevent <-> curl plumbing (docs/architecture.md) ---------------- */

static void on_timer(evutil_socket_t fd, short what, void *arg)
{
        eb_http_t *http = arg;
        int running = 0;
        CURLMcode mc;

        (void)fd;
        (void)what;
        mc = curl_multi_socket_action(http->multi, CURL_SOCKET_TIMEOUT, 0,
                                      &running);
        if (mc != CURLM_OK)
                eb_error("http", "curl_multi_socket_action(timeout): %s",
                         curl_multi_strerror(mc));
        check_multi_info(http);
}

static int on_timer_update(CURLM *multi, long timeout_ms, void *userp)
{
        eb_http_t *http = userp;
        struct timeval tv;

        (void)multi;
        /* Never call libcurl from here. */
        if (timeout_ms < 0) {
                evtimer_del(http->timer);
                return 0;
        }
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        evtimer_add(http->timer, &tv);
        return 0;
}

static void on_sock_event(evutil_socket_t fd, short what, void *arg)
{
        eb_http_t *http = arg;
        int flags = 0, running = 0;
        CURLMcode mc;

        if (what & EV_READ)
                flags |= CURL_CSELECT_IN;
        if (what & EV_WRITE)
                flags |= CURL_CSELECT_OUT;
        mc = curl_multi_socket_action(http->multi, fd, flags, &running);
        if (mc != CURLM_OK)
                eb_error("http", "curl_multi_socket_action: %s",
                         curl_multi_strerror(mc));
        check_multi_info(http);
}

static int on_socket(CURL *easy, curl_socket_t s, int what, void *userp,
                     void *socketp)
{
        eb_http_t *http = userp;
        struct sockctx *sc = socketp;
        short kind;

        (void)easy;
        if (what == CURL_POLL_REMOVE) {
                if (sc) {
                        event_free(sc->ev);
                        free(sc);
                }
                return 0;
        }
        kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                       ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
        if (!sc) {
                sc = calloc(1, sizeof(*sc));
                if (!sc)
                        return -1;
                sc->http = http;
                sc->ev = event_new(http->base, s, kind, on_sock_event, http);
                if (!sc->ev) {
                        free(sc);
                        return -1;
                }
                curl_multi_assign(http->multi, s, sc);
        } else {
                event_del(sc->ev);
                event_assign(sc->ev, http->base, s, kind, on_sock_event, http);
        }
        event_add(sc->ev, NULL);
        return 0;
}

/* ---- transfers --------------------------------------------------------- */

static size_t on_write(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct xfer *x = userdata;
        size_t n = size * nmemb;

        if (eb_buf_append(&x->body, ptr, n) != 0) {
                x->too_big = 1;
                return 0; /* aborts the transfer with CURLE_WRITE_ERROR */
        }
        return n;
}

static size_t on_header(char *ptr, size_t size, size_t nmemb, void *userdata)
{
        struct xfer *x = userdata;
        size_t n = size * nmemb;

        /* A new status line starts a new header block (redirects, 100). */
        if (n >= 5 && !strncmp(ptr, "HTTP/", 5))
                eb_buf_reset(&x->hdrraw);
        if (eb_buf_append(&x->hdrraw, ptr, n) != 0)
                return 0;
        return n;
}

static void xfer_unlink(eb_http_t *http, struct xfer *x)
{
        if (x->prev)
                x->prev->next = x->next;
        else
                http->xfers = x->next;
        if (x->next)
                x->next->prev = x->prev;
        x->next = x->prev = NULL;
}

static void xfer_free(struct xfer *x)
{
        if (!x)
                return;
        if (x->easy)
                curl_easy_cleanup(x->easy);
        curl_slist_free_all(x->headers);
        eb_buf_fini(&x->body);
        eb_buf_fini(&x->hdrraw);
        free(x);
}

/* Header lookup over the raw header block of the final response. */
const char *eb_http_result_header(const struct eb_http_result *res,
                                  const char *name)
{
        const struct eb_buf *raw = res->priv_;
        static __thread char val[1024];
        size_t nlen = strlen(name);
        const char *p, *end;

        if (!raw || !raw->data)
                return NULL;
        p = raw->data;
        end = raw->data + raw->len;
        while (p < end) {
                const char *eol = memchr(p, '\n', (size_t)(end - p));
                const char *le = eol ? eol : end;
                if ((size_t)(le - p) > nlen && p[nlen] == ':' &&
                    !strncasecmp(p, name, nlen)) {
                        const char *v = p + nlen + 1;
                        size_t l;
                        while (v < le && (*v == ' ' || *v == '\t'))
                                v++;
                        l = (size_t)(le - v);
                        while (l && (v[l - 1] == '\r' || v[l - 1] == ' ' ||
                                     v[l - 1] == '\t'))
                                l--;
                        if (l >= sizeof(val))
                                l = sizeof(val) - 1;
                        memcpy(val, v, l);
                        val[l] = '\0';
                        return val;
                }
                p = eol ? eol + 1 : end;
        }
        return NULL;
}

static void finish(eb_http_t *http, struct xfer *x, CURLcode rc)
{
        struct eb_http_result res;
        long status = 0;

        curl_easy_getinfo(x->easy, CURLINFO_RESPONSE_CODE, &status);
        memset(&res, 0, sizeof(res));
        res.err = map_curl_err(rc, x->too_big);
        res.errstr =
                res.err ? (x->err[0] ? x->err : curl_easy_strerror(rc)) : "";
        if (res.err == -E2BIG)
                res.errstr = "response body over the size limit";
        res.status = status;
        res.body = x->body.data ? x->body.data : "";
        res.body_len = x->body.len;
        res.elapsed_us = eb_mono_us() - x->started_us;
        res.priv_ = &x->hdrraw;

        curl_multi_remove_handle(http->multi, x->easy);
        xfer_unlink(http, x);
        http->inflight--;
        if (x->cb)
                x->cb(&res, x->opaque);
        xfer_free(x);
}

static void check_multi_info(eb_http_t *http)
{
        CURLMsg *msg;
        int left;

        while ((msg = curl_multi_info_read(http->multi, &left))) {
                struct xfer *x = NULL;
                CURLcode rc;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                rc = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE,
                                  (char **)&x);
                if (x)
                        finish(http, x, rc); /* msg is invalid after this */
        }
}

eb_http_t *eb_http_new(struct event_base *base, char *errstr,
                       size_t errstr_size)
{
        eb_http_t *http = eb_xcalloc(1, sizeof(*http));

        http->base = base;
        http->next_id = 1;
        http->multi = curl_multi_init();
        http->timer = evtimer_new(base, on_timer, http);
        if (!http->multi || !http->timer) {
                snprintf(errstr, errstr_size, "cannot create curl multi");
                eb_http_free(http);
                return NULL;
        }
        curl_multi_setopt(http->multi, CURLMOPT_SOCKETFUNCTION, on_socket);
        curl_multi_setopt(http->multi, CURLMOPT_SOCKETDATA, http);
        curl_multi_setopt(http->multi, CURLMOPT_TIMERFUNCTION, on_timer_update);
        curl_multi_setopt(http->multi, CURLMOPT_TIMERDATA, http);
        return http;
}

void eb_http_set_limits(eb_http_t *http, long max_total, long max_per_host)
{
        curl_multi_setopt(http->multi, CURLMOPT_MAX_TOTAL_CONNECTIONS,
                          max_total);
        curl_multi_setopt(http->multi, CURLMOPT_MAX_HOST_CONNECTIONS,
                          max_per_host);
}

int eb_http_start(eb_http_t *http, const struct eb_http_request *req,
                  eb_http_cb *cb, void *opaque, uint64_t *idp)
{
        struct xfer *x;
        size_t i;

        if (!req->url)
                return -EINVAL;
        x = eb_xcalloc(1, sizeof(*x));
        x->http = http;
        x->cb = cb;
        x->opaque = opaque;
        x->id = http->next_id++;
        eb_buf_init(&x->body, req->max_body ? req->max_body : 16u << 20);
        eb_buf_init(&x->hdrraw, EB_HTTP_MAX_HEADER_BYTES);
        x->easy = curl_easy_init();
        if (!x->easy)
                goto nomem;
        for (i = 0; req->headers && req->headers[i]; i++) {
                struct curl_slist *n =
                        curl_slist_append(x->headers, req->headers[i]);
                if (!n)
                        goto nomem;
                x->headers = n;
        }
        curl_easy_setopt(x->easy, CURLOPT_URL, req->url);
        curl_easy_setopt(x->easy, CURLOPT_PRIVATE, (char *)x);
        curl_easy_setopt(x->easy, CURLOPT_ERRORBUFFER, x->err);
        curl_easy_setopt(x->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(x->easy, CURLOPT_WRITEFUNCTION, on_write);
        curl_easy_setopt(x->easy, CURLOPT_WRITEDATA, x);
        curl_easy_setopt(x->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(x->easy, CURLOPT_HEADERDATA, x);
        curl_easy_setopt(x->easy, CURLOPT_TIMEOUT_MS,
                         (long)(req->timeout_ms ? req->timeout_ms : 30000));
        curl_easy_setopt(x->easy, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)(req->connect_timeout_ms
                                        ? req->connect_timeout_ms
                                        : 5000));
        curl_easy_setopt(x->easy, CURLOPT_PROTOCOLS_STR,
                         req->protocols ? req->protocols : "http,https");
        curl_easy_setopt(x->easy, CURLOPT_ACCEPT_ENCODING, "");
        curl_easy_setopt(x->easy, CURLOPT_TCP_KEEPALIVE, 1L);
        curl_easy_setopt(x->easy, CURLOPT_USERAGENT, "evbridge/" EB_VERSION);
        curl_easy_setopt(x->easy, CURLOPT_FOLLOWLOCATION, 0L);
        if (x->headers)
                curl_easy_setopt(x->easy, CURLOPT_HTTPHEADER, x->headers);
        if (req->method && strcmp(req->method, "GET"))
                curl_easy_setopt(x->easy, CURLOPT_CUSTOMREQUEST, req->method);
        if (req->body) {
                curl_easy_setopt(x->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                                 (curl_off_t)req->body_len);
                curl_easy_setopt(x->easy, CURLOPT_COPYPOSTFIELDS, req->body);
        }
        x->started_us = eb_mono_us();
        /* add_handle arms the timer callback; it kicks the transfer off. */
        if (curl_multi_add_handle(http->multi, x->easy) != CURLM_OK)
                goto nomem;
        x->next = http->xfers;
        if (x->next)
                x->next->prev = x;
        http->xfers = x;
        http->inflight++;
        if (idp)
                *idp = x->id;
        return 0;
nomem:
        xfer_free(x);
        return -ENOMEM;
}

void eb_http_cancel(eb_http_t *http, uint64_t id)
{
        struct xfer *x;

        for (x = http->xfers; x; x = x->next) {
                if (x->id == id) {
                        curl_multi_remove_handle(http->multi, x->easy);
                        xfer_unlink(http, x);
                        http->inflight--;
                        xfer_free(x);
                        return;
                }
        }
}

int eb_http_inflight(const eb_http_t *http)
{
        return http->inflight;
}

void eb_http_free(eb_http_t *http)
{
        if (!http)
                return;
        while (http->xfers) {
                struct xfer *x = http->xfers;
                curl_multi_remove_handle(http->multi, x->easy);
                xfer_unlink(http, x);
                xfer_free(x);
        }
        /* curl_multi_cleanup may call the socket callback: base must live. */
        if (http->multi)
                curl_multi_cleanup(http->multi);
        if (http->timer)
                event_free(http->timer);
        free(http);
}
