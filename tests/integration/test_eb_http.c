/*
 * eb_http against an in-process evhttp server on the same event_base:
 * bodies, headers, gzip, timeouts, the body cap, refused connections,
 * many transfers at once, cancellation and keep-alive.
 */
#include "eb_http.h"
#include "eb_test.h"
#include "eb_time.h"

#include <curl/curl.h>
#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>

static struct event_base *base;
static eb_http_t *http;
static int port;
static int server_conns;
static char url[256];

struct slow {
        struct evhttp_request *req;
        struct event *ev;
        struct slow *next;
};
static struct slow *slows; /* pending slow replies, freed at exit */

static void slow_reply(evutil_socket_t fd, short what, void *arg)
{
        struct slow *s = arg;

        (void)fd;
        (void)what;
        evbuffer_add_printf(evhttp_request_get_output_buffer(s->req), "late");
        evhttp_send_reply(s->req, 200, "OK", NULL);
        event_del(s->ev);
        s->req = NULL;
}

static void on_conn_close(struct evhttp_connection *conn, void *arg)
{
        (void)conn;
        (void)arg;
}

static void handler(struct evhttp_request *req, void *arg)
{
        const char *uri = evhttp_request_get_uri(req);
        struct evbuffer *out = evhttp_request_get_output_buffer(req);
        struct evkeyvalq *oh = evhttp_request_get_output_headers(req);
        static struct evhttp_connection *seen[64];
        struct evhttp_connection *conn = evhttp_request_get_connection(req);
        int i, known = 0;

        (void)arg;
        for (i = 0; i < server_conns && i < 64; i++)
                known |= seen[i] == conn;
        if (!known) {
                if (server_conns < 64)
                        seen[server_conns] = conn;
                server_conns++;
                evhttp_connection_set_closecb(conn, on_conn_close, NULL);
        }

        if (!strncmp(uri, "/ok", 3)) {
                evhttp_add_header(oh, "Content-Type", "application/json");
                evhttp_add_header(oh, "RateLimit",
                                  "limit=100, remaining=99, reset=0.5");
                evbuffer_add_printf(out, "{\"uri\":\"%s\"}", uri);
                evhttp_send_reply(req, 200, "OK", NULL);
        } else if (!strcmp(uri, "/gzip")) {
                size_t n = 0;
                char *gz = eb_test_read_fixture("http/hello.json.gz", &n);
                const char *ae = evhttp_find_header(
                        evhttp_request_get_input_headers(req),
                        "Accept-Encoding");
                if (gz && ae && strstr(ae, "gzip")) {
                        evhttp_add_header(oh, "Content-Encoding", "gzip");
                        evbuffer_add(out, gz, n);
                        evhttp_send_reply(req, 200, "OK", NULL);
                } else {
                        evhttp_send_reply(req, 406, "No gzip", NULL);
                }
                free(gz);
        } else if (!strcmp(uri, "/big")) {
                char chunk[1024];
                memset(chunk, 'x', sizeof(chunk));
                for (i = 0; i < 100; i++)
                        evbuffer_add(out, chunk, sizeof(chunk));
                evhttp_send_reply(req, 200, "OK", NULL);
        } else if (!strcmp(uri, "/slow")) {
                struct slow *s = calloc(1, sizeof(*s));
                struct timeval tv = {2, 0};
                s->req = req;
                s->next = slows;
                slows = s;
                s->ev = evtimer_new(base, slow_reply, s);
                evtimer_add(s->ev, &tv);
        } else if (!strcmp(uri, "/headers")) {
                const char *auth = evhttp_find_header(
                        evhttp_request_get_input_headers(req), "Authorization");
                evbuffer_add_printf(out, "%s", auth ? auth : "none");
                evhttp_send_reply(req, 200, "OK", NULL);
        } else {
                evhttp_send_reply(req, 404, "Not Found", NULL);
        }
}

struct result {
        int done;
        int err;
        long status;
        char body[512];
        size_t body_len;
        char ratelimit[128];
};

static void on_done(const struct eb_http_result *res, void *opaque)
{
        struct result *r = opaque;
        const char *rl = eb_http_result_header(res, "ratelimit");

        r->done++;
        r->err = res->err;
        r->status = res->status;
        r->body_len = res->body_len;
        snprintf(r->body, sizeof(r->body), "%s", res->body);
        snprintf(r->ratelimit, sizeof(r->ratelimit), "%s", rl ? rl : "");
}

static void run_until(int *counter, int want, int ms)
{
        int64_t deadline = eb_mono_ms() + EB_T_TMOUT(ms);

        while (*counter < want && eb_mono_ms() < deadline)
                event_base_loop(base, EVLOOP_ONCE);
}

static int get(const char *path, struct result *r, int64_t timeout_ms,
               size_t max_body)
{
        struct eb_http_request req = {0};
        char u[300];

        snprintf(u, sizeof(u), "%s%s", url, path);
        req.url = u;
        req.timeout_ms = timeout_ms;
        req.max_body = max_body;
        memset(r, 0, sizeof(*r));
        if (eb_http_start(http, &req, on_done, r, NULL))
                return -1;
        run_until(&r->done, 1, 10000);
        return r->done == 1 ? 0 : -1;
}

static void test_ok_and_headers(void)
{
        struct result r;

        EB_REQUIRE(get("/ok?x=1", &r, 5000, 0) == 0);
        EB_CHECK_INT(r.err, 0);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK_STR(r.body, "{\"uri\":\"/ok?x=1\"}");
        EB_CHECK_STR(r.ratelimit, "limit=100, remaining=99, reset=0.5");
}

static void test_request_headers(void)
{
        struct result r;
        struct eb_http_request req = {0};
        const char *hdrs[] = {"Authorization: Bearer abc", NULL};
        char u[300];

        snprintf(u, sizeof(u), "%s/headers", url);
        req.url = u;
        req.headers = hdrs;
        memset(&r, 0, sizeof(r));
        EB_REQUIRE(eb_http_start(http, &req, on_done, &r, NULL) == 0);
        run_until(&r.done, 1, 5000);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK_STR(r.body, "Bearer abc");
}

static void test_gzip(void)
{
        struct result r;
        size_t n = 0;
        char *plain = eb_test_read_fixture("http/hello.json", &n);

        EB_REQUIRE(plain != NULL);
        EB_REQUIRE(get("/gzip", &r, 5000, 0) == 0);
        EB_CHECK_INT(r.status, 200);
        EB_CHECK_INT(r.body_len, n);
        EB_CHECK(n < sizeof(r.body) ? !strcmp(r.body, plain)
                                    : !strncmp(r.body, plain, 100));
        free(plain);
}

static void test_404(void)
{
        struct result r;

        EB_REQUIRE(get("/nope", &r, 5000, 0) == 0);
        EB_CHECK_INT(r.err, 0);
        EB_CHECK_INT(r.status, 404);
}

static void test_timeout(void)
{
        struct result r;

        EB_REQUIRE(get("/slow", &r, 300, 0) == 0);
        EB_CHECK_INT(r.err, -ETIMEDOUT);
}

static void test_body_cap(void)
{
        struct result r;

        EB_REQUIRE(get("/big", &r, 5000, 10000) == 0);
        EB_CHECK_INT(r.err, -E2BIG);
        EB_REQUIRE(get("/big", &r, 5000, 200000) == 0);
        EB_CHECK_INT(r.err, 0);
        EB_CHECK_INT(r.body_len, 102400);
}

static void test_refused(void)
{
        struct result r;
        struct eb_http_request req = {0};
        evutil_socket_t fd;
        struct sockaddr_in sin;
        socklen_t sl = sizeof(sin);
        char u[128];

        /* Find a port nobody listens on: bind, read it, close. */
        fd = socket(AF_INET, SOCK_STREAM, 0);
        memset(&sin, 0, sizeof(sin));
        sin.sin_family = AF_INET;
        sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        EB_REQUIRE(bind(fd, (struct sockaddr *)&sin, sizeof(sin)) == 0);
        getsockname(fd, (struct sockaddr *)&sin, &sl);
        evutil_closesocket(fd);
        snprintf(u, sizeof(u), "http://127.0.0.1:%d/", ntohs(sin.sin_port));
        req.url = u;
        memset(&r, 0, sizeof(r));
        EB_REQUIRE(eb_http_start(http, &req, on_done, &r, NULL) == 0);
        run_until(&r.done, 1, 5000);
        EB_CHECK_INT(r.done, 1);
        EB_CHECK_INT(r.err, -ECONNREFUSED);
}

static void test_many_and_keepalive(void)
{
        enum { N = 60 };
        static struct result rs[N];
        struct eb_http_request req = {0};
        char u[300];
        int i, done = 0, ok = 0, conns_before;

        snprintf(u, sizeof(u), "%s/ok", url);
        req.url = u;
        for (i = 0; i < N; i++) {
                memset(&rs[i], 0, sizeof(rs[i]));
                EB_REQUIRE(eb_http_start(http, &req, on_done, &rs[i], NULL) ==
                           0);
        }
        EB_CHECK_INT(eb_http_inflight(http), N);
        while (done < N) {
                int64_t deadline = eb_mono_ms() + EB_T_TMOUT(10000);
                event_base_loop(base, EVLOOP_ONCE);
                done = 0;
                for (i = 0; i < N; i++)
                        done += rs[i].done;
                if (eb_mono_ms() > deadline)
                        break;
        }
        for (i = 0; i < N; i++)
                ok += rs[i].status == 200;
        EB_CHECK_INT(ok, N);
        EB_CHECK_INT(eb_http_inflight(http), 0);

        /* Sequential requests reuse one kept-alive connection. */
        conns_before = server_conns;
        for (i = 0; i < 5; i++) {
                struct result r;
                EB_REQUIRE(get("/ok", &r, 5000, 0) == 0);
                EB_CHECK_INT(r.status, 200);
        }
        EB_CHECK(server_conns - conns_before <= 1);
}

static void test_cancel(void)
{
        struct result r;
        struct eb_http_request req = {0};
        char u[300];
        uint64_t id = 0;
        int64_t until;

        snprintf(u, sizeof(u), "%s/slow", url);
        req.url = u;
        memset(&r, 0, sizeof(r));
        EB_REQUIRE(eb_http_start(http, &req, on_done, &r, &id) == 0);
        EB_CHECK(id != 0);
        event_base_loop(base, EVLOOP_NONBLOCK);
        eb_http_cancel(http, id);
        EB_CHECK_INT(eb_http_inflight(http), 0);
        until = eb_mono_ms() + 300;
        while (eb_mono_ms() < until)
                event_base_loop(base, EVLOOP_NONBLOCK);
        EB_CHECK_INT(r.done, 0);
}

int main(void)
{
        struct evhttp *srv;
        struct evhttp_bound_socket *bs;
        char errstr[256];
        struct sockaddr_storage ss;
        socklen_t sl = sizeof(ss);

        curl_global_init(CURL_GLOBAL_DEFAULT);
        base = event_base_new();
        srv = evhttp_new(base);
        evhttp_set_gencb(srv, handler, NULL);
        bs = evhttp_bind_socket_with_handle(srv, "127.0.0.1", 0);
        if (!bs)
                return 1;
        getsockname(evhttp_bound_socket_get_fd(bs), (struct sockaddr *)&ss,
                    &sl);
        port = ntohs(((struct sockaddr_in *)&ss)->sin_port);
        snprintf(url, sizeof(url), "http://127.0.0.1:%d", port);
        http = eb_http_new(base, errstr, sizeof(errstr));

        EB_RUN(test_ok_and_headers);
        EB_RUN(test_request_headers);
        EB_RUN(test_gzip);
        EB_RUN(test_404);
        EB_RUN(test_timeout);
        EB_RUN(test_body_cap);
        EB_RUN(test_refused);
        EB_RUN(test_many_and_keepalive);
        EB_RUN(test_cancel);

        eb_http_free(http);
        /* Let the slow replies scheduled by the server fire or be dropped. */
        evhttp_free(srv);
        while (slows) {
                struct slow *s = slows;
                slows = s->next;
                event_free(s->ev);
                free(s);
        }
        event_base_free(base);
        curl_global_cleanup();
        return eb_test_summary();
}
