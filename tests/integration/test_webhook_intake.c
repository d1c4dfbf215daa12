/*
 * Webhook intake in process: eb_httpd + eb_webhook on one event_base,
 * driven by an evhttp client on the same loop.
 *
 * Most cases use a stub sink, so the test decides when (and how) each
 * publish settles: held until Kafka answers, 503 on the deadline with the
 * late callback touching nothing, retries joining the publish in flight,
 * queue full, the held cap, shutdown, and every rejection with its status
 * and reason counter. The last case runs the real path: eb_pipeline and
 * eb_kafka on a real Apache Kafka broker (tests/kafka/broker through
 * eb_tkafka, started for it), paused (SIGSTOP) and then resumed; a
 * read_committed consumer must read the event exactly once. Also
 * /healthz, /readyz, /metrics, 404/405 and a bind failure.
 */
#include "eb_config.h"
#include "eb_httpd.h"
#include "eb_kafka.h"
#include "eb_kmock.h"
#include "eb_metrics.h"
#include "eb_pipeline.h"
#include "eb_provider.h"
#include "eb_test.h"
#include "eb_time.h"
#include "eb_tkafka.h"
#include "eb_util.h"
#include "eb_webhook.h"
#include "eb_webhook_sig.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <signal.h>

#define CLOSE_KEY                                                              \
        "4f1b2e7c9d3a5b6e8f0a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192a3b4c5"
#define KOTA_SECRET "whsec_kota-1"
#define STD_SECRET  "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
#define KOMMO_TOKEN "kommo-hook-1"
#define MAX_PEND    64
#define MAX_CONNS   256

static const char *const cfg_fmt =
        "{\"http\":{\"listen\":\"127.0.0.1:%d\",\"webhook_deadline\":"
        "\"%dms\",\"max_held\":%d,\"max_body\":\"8KiB\"},"
        "\"kafka\":{\"properties\":{\"reconnect.backoff.ms\":\"50\","
        "\"reconnect.backoff.max.ms\":\"300\"}},"
        "\"sources\":["
        "{\"name\":\"close-1\",\"provider\":\"close\",\"base_url\":"
        "\"http://127.0.0.1:1\",\"credentials\":{\"api_key\":\"k\"},"
        "\"webhook\":{\"secret\":\"" CLOSE_KEY "\"}},"
        "{\"name\":\"kota-1\",\"provider\":\"kota\",\"base_url\":"
        "\"http://127.0.0.1:1\",\"credentials\":{\"api_key\":\"k\"},"
        "\"webhook\":{\"secret\":\"" KOTA_SECRET "\"}},"
        "{\"name\":\"kota-std\",\"provider\":\"kota\",\"base_url\":"
        "\"http://127.0.0.1:1\",\"credentials\":{\"api_key\":\"k\"},"
        "\"webhook\":{\"secret\":\"" STD_SECRET "\",\"scheme\":\"standard\"}},"
        "{\"name\":\"kommo-1\",\"provider\":\"kommo\",\"base_url\":"
        "\"http://127.0.0.1:1\",\"credentials\":{\"token\":\"t\"},"
        "\"webhook\":{\"token\":\"" KOMMO_TOKEN "\"}},"
        "{\"name\":\"close-nohook\",\"provider\":\"close\",\"base_url\":"
        "\"http://127.0.0.1:1\",\"credentials\":{\"api_key\":\"k\"}}]}";

struct pend {
        eb_publish_done_cb *done;
        void *arg;
        char id[64];
};

struct rig {
        struct event_base *base;
        struct event *tick;
        struct eb_config *cfg;
        eb_metrics_t *metrics;
        eb_httpd_t *httpd;
        eb_webhook_t *wh;
        /* real publishing path (NULL with the stub sink) */
        eb_kafka_t *kafka;
        eb_pipeline_t *pipeline;
        /* stub sink */
        int publish_rc;
        int publishes;
        struct pend pend[MAX_PEND];
        int npend;
        /* trigger stub */
        int triggers;
        /* readiness stub */
        int not_ready;
        struct evhttp_connection *conns[MAX_CONNS];
        int nconns;
};

struct resp {
        int done;
        int code;
        char body[4096];
        char retry_after[32];
        char allow[32];
        char ctype[128];
};

static void on_tick(evutil_socket_t fd, short what, void *arg)
{
        (void)fd;
        (void)what;
        (void)arg;
}

static int stub_publish(void *opaque, const struct eb_source_cfg *src,
                        struct eb_event **evts, size_t cnt, json_t *cp,
                        eb_publish_done_cb *done, void *arg)
{
        struct rig *r = opaque;
        size_t i;

        (void)src;
        (void)cp;
        r->publishes++;
        if (!r->publish_rc && r->npend < MAX_PEND) {
                struct pend *p = &r->pend[r->npend++];
                p->done = done;
                p->arg = arg;
                snprintf(p->id, sizeof(p->id), "%s", cnt ? evts[0]->id : "");
        }
        for (i = 0; i < cnt; i++)
                eb_event_free(evts[i]);
        free(evts);
        return r->publish_rc;
}

static void settle(struct rig *r, int i, int err)
{
        r->pend[i].done(r->pend[i].arg, err);
        r->pend[i].done = NULL;
}

/* Settle the pending publish of event @p id. @returns 0 or -ENOENT. */
static int settle_id(struct rig *r, const char *id, int err)
{
        int i;

        for (i = 0; i < r->npend; i++) {
                if (r->pend[i].done && !strcmp(r->pend[i].id, id)) {
                        settle(r, i, err);
                        return 0;
                }
        }
        return -ENOENT;
}

static int stub_trigger(void *opaque, const char *source)
{
        struct rig *r = opaque;

        (void)source;
        r->triggers++;
        return 0;
}

static int stub_ready(void *opaque, const char **why)
{
        struct rig *r = opaque;

        if (r->not_ready) {
                *why = "state not restored";
                return 0;
        }
        return 1;
}

/* The real broker of test_kafka_down_then_back (NULL before it). */
static eb_tkafka_t *kafka;

/* @p real: eb_pipeline + eb_kafka on the real broker instead of the stub
 * sink. */
static int rig_start(struct rig *r, int port, int deadline_ms, int max_held,
                     int real)
{
        struct eb_webhook_deps deps;
        struct timeval tv = {0, 20000};
        char json[4096], err[512] = "";

        memset(r, 0, sizeof(*r));
        r->base = event_base_new();
        r->tick = event_new(r->base, -1, EV_PERSIST, on_tick, NULL);
        event_add(r->tick, &tv);
        snprintf(json, sizeof(json), cfg_fmt, port, deadline_ms, max_held);
        r->cfg = eb_config_load_string(json, err, sizeof(err));
        if (!r->cfg) {
                fprintf(stderr, "  config: %s\n", err);
                return -1;
        }
        r->metrics = eb_metrics_new();
        memset(&deps, 0, sizeof(deps));
        if (real) {
                if (!kafka)
                        return -1;
                free(r->cfg->brokers);
                r->cfg->brokers = eb_xstrdup(eb_tkafka_bootstrap(kafka));
                r->cfg->embedded = 0;
                r->kafka = eb_kafka_new(r->base, r->cfg, err, sizeof(err));
                if (!r->kafka) {
                        fprintf(stderr, "  kafka: %s\n", err);
                        return -1;
                }
                r->pipeline = eb_pipeline_new(r->base, r->cfg, r->kafka, err,
                                              sizeof(err));
                if (!r->pipeline)
                        return -1;
                deps.sink = eb_pipeline_sink(r->pipeline);
                deps.pipeline = r->pipeline;
        } else {
                deps.sink.publish = stub_publish;
                deps.sink.opaque = r;
        }
        deps.trigger = stub_trigger;
        deps.trigger_opaque = r;
        deps.ready = stub_ready;
        deps.ready_opaque = r;
        r->wh = eb_webhook_new(r->base, r->cfg, &deps, err, sizeof(err));
        if (!r->wh) {
                fprintf(stderr, "  webhook: %s\n", err);
                return -1;
        }
        r->httpd = eb_httpd_new(r->base, r->cfg, r->metrics, err, sizeof(err));
        if (!r->httpd) {
                fprintf(stderr, "  httpd: %s\n", err);
                return -1;
        }
        eb_httpd_set_ready(r->httpd, stub_ready, r);
        eb_httpd_route(r->httpd, "/webhooks/", eb_webhook_handle, r->wh);
        eb_metrics_add_collector(r->metrics, eb_webhook_collect, r->wh);
        return 0;
}

static void rig_stop(struct rig *r)
{
        int i;

        for (i = 0; i < r->nconns; i++)
                evhttp_connection_free(r->conns[i]);
        if (r->wh)
                eb_webhook_shutdown(r->wh);
        if (r->metrics && r->wh)
                eb_metrics_remove_collector(r->metrics, eb_webhook_collect,
                                            r->wh);
        if (r->httpd)
                eb_httpd_stop(r->httpd);
        /* Settle what the stub still holds, as eb_kafka_free would. */
        for (i = 0; i < r->npend; i++)
                if (r->pend[i].done)
                        settle(r, i, -ECANCELED);
        eb_kafka_free(r->kafka);
        eb_webhook_free(r->wh);
        eb_httpd_free(r->httpd);
        eb_pipeline_free(r->pipeline);
        eb_metrics_free(r->metrics);
        eb_config_free(r->cfg);
        if (r->tick)
                event_free(r->tick);
        if (r->base)
                event_base_free(r->base);
        memset(r, 0, sizeof(*r));
}

static int run_until(struct rig *r, const int *flag, int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + EB_T_TMOUT(timeout_ms);

        while (!*flag && eb_mono_ms() < deadline)
                event_base_loop(r->base, EVLOOP_ONCE);
        return *flag ? 0 : -ETIMEDOUT;
}

/* Run the loop until *@p v reaches @p target. */
static int wait_int(struct rig *r, const int *v, int target, int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + EB_T_TMOUT(timeout_ms);

        while (*v < target && eb_mono_ms() < deadline)
                event_base_loop(r->base, EVLOOP_ONCE);
        return *v >= target ? 0 : -ETIMEDOUT;
}

/* Run the loop until @p n requests are held. */
static int wait_held(struct rig *r, int n, int timeout_ms)
{
        int64_t deadline = eb_mono_ms() + EB_T_TMOUT(timeout_ms);

        while (eb_webhook_held(r->wh) < n && eb_mono_ms() < deadline)
                event_base_loop(r->base, EVLOOP_ONCE);
        return eb_webhook_held(r->wh) >= n ? 0 : -ETIMEDOUT;
}

static void run_for(struct rig *r, int ms)
{
        int64_t deadline = eb_mono_ms() + ms;

        while (eb_mono_ms() < deadline)
                event_base_loop(r->base, EVLOOP_ONCE);
}

/* ---- the client ------------------------------------------------------ */

static void on_resp(struct evhttp_request *req, void *arg)
{
        struct resp *out = arg;
        const char *v;

        out->done = 1;
        if (!req) {
                out->code = 0;
                return;
        }
        out->code = evhttp_request_get_response_code(req);
        {
                struct evbuffer *in = evhttp_request_get_input_buffer(req);
                size_t n = evbuffer_get_length(in);
                if (n >= sizeof(out->body))
                        n = sizeof(out->body) - 1;
                evbuffer_copyout(in, out->body, n);
                out->body[n] = '\0';
        }
        v = evhttp_find_header(evhttp_request_get_input_headers(req),
                               "Retry-After");
        snprintf(out->retry_after, sizeof(out->retry_after), "%s", v ? v : "");
        v = evhttp_find_header(evhttp_request_get_input_headers(req), "Allow");
        snprintf(out->allow, sizeof(out->allow), "%s", v ? v : "");
        v = evhttp_find_header(evhttp_request_get_input_headers(req),
                               "Content-Type");
        snprintf(out->ctype, sizeof(out->ctype), "%s", v ? v : "");
}

/* Start a request on a connection of its own (held requests must not
 * queue behind each other). */
static void send_req(struct rig *r, enum evhttp_cmd_type method,
                     const char *path, const char *const *headers,
                     const char *body, size_t len, struct resp *out)
{
        struct evhttp_connection *c;
        struct evhttp_request *req;
        struct evkeyvalq *h;
        size_t i;

        memset(out, 0, sizeof(*out));
        c = evhttp_connection_base_new(r->base, NULL, "127.0.0.1",
                                       (unsigned short)eb_httpd_port(r->httpd));
        if (!c || r->nconns >= MAX_CONNS) {
                out->done = 1;
                return;
        }
        evhttp_connection_set_timeout(c, 30);
        r->conns[r->nconns++] = c;
        req = evhttp_request_new(on_resp, out);
        h = evhttp_request_get_output_headers(req);
        evhttp_add_header(h, "Host", "127.0.0.1");
        for (i = 0; headers && headers[i] && headers[i + 1]; i += 2)
                evhttp_add_header(h, headers[i], headers[i + 1]);
        if (body && len)
                evbuffer_add(evhttp_request_get_output_buffer(req), body, len);
        evhttp_make_request(c, req, method, path);
}

static int request(struct rig *r, enum evhttp_cmd_type method, const char *path,
                   const char *const *headers, const char *body,
                   struct resp *out)
{
        send_req(r, method, path, headers, body, body ? strlen(body) : 0, out);
        if (run_until(r, &out->done, 10000))
                return -ETIMEDOUT;
        return out->code;
}

/* ---- signed bodies --------------------------------------------------- */

/* A Close webhook body. The event time is recent, as a real webhook's is:
 * the dedupe table remembers an id for dedupe.window after its event
 * time. The time is fixed per test run so retries carry the same version. */
static char *close_body(const char *id)
{
        static char when[40];

        if (!when[0])
                eb_rfc3339_format(eb_now_ms() - 60000, 6, when, sizeof(when));
        return eb_xasprintf(
                "{\"event\":{\"id\":\"%s\",\"object_type\":\"lead\","
                "\"action\":\"created\",\"date_created\":\"%s\","
                "\"date_updated\":\"%s\",\"object_id\":\"lead_%s\","
                "\"organization_id\":\"orga_1\",\"user_id\":\"user_1\","
                "\"data\":{\"name\":\"x\"}},\"subscription_id\":"
                "\"whsub_1\"}",
                id, when, when, id);
}

/* Close headers for @p body signed at @p ts_s. */
struct signed_req {
        char ts[32];
        char sig[65];
        const char *hdrs[8];
};

static void close_sign(struct signed_req *s, const char *body, int64_t ts_s,
                       const char *key_hex)
{
        unsigned char key[64], mac[32];
        char *msg;
        int klen;

        snprintf(s->ts, sizeof(s->ts), "%lld", (long long)ts_s);
        klen = eb_hex_decode(key_hex, key, sizeof(key));
        msg = eb_xasprintf("%s%s", s->ts, body);
        if (klen <= 0 ||
            eb_hmac_sha256(key, (size_t)klen, msg, strlen(msg), mac))
                memset(mac, 0, sizeof(mac));
        free(msg);
        eb_hex_encode(mac, 32, s->sig);
        s->hdrs[0] = "Content-Type";
        s->hdrs[1] = "application/json";
        s->hdrs[2] = "close-sig-timestamp";
        s->hdrs[3] = s->ts;
        s->hdrs[4] = "close-sig-hash";
        s->hdrs[5] = s->sig;
        s->hdrs[6] = NULL;
}

static int post_close(struct rig *r, const char *id, struct resp *out, int wait)
{
        struct signed_req s;
        char *body = close_body(id);

        close_sign(&s, body, eb_now_ms() / 1000, CLOSE_KEY);
        send_req(r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs, body,
                 strlen(body), out);
        free(body);
        if (!wait)
                return 0;
        if (run_until(r, &out->done, 10000))
                return -ETIMEDOUT;
        return out->code;
}

static uint64_t count(struct rig *r, const char *src, const char *reason)
{
        return eb_webhook_count(r->wh, src, reason);
}

/* ---- cases ----------------------------------------------------------- */

static void test_health_ready_metrics(void)
{
        struct rig r;
        struct resp out;

        EB_REQUIRE(rig_start(&r, 0, 300, 10, 0) == 0);
        EB_CHECK(eb_httpd_port(r.httpd) > 0);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/healthz", NULL, NULL, &out),
                     200);
        EB_CHECK_STR(out.body, "ok\n");
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/readyz", NULL, NULL, &out),
                     200);
        r.not_ready = 1;
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/readyz", NULL, NULL, &out),
                     503);
        EB_CHECK(strstr(out.body, "state not restored") != NULL);
        /* Liveness does not depend on readiness. */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/healthz", NULL, NULL, &out),
                     200);
        r.not_ready = 0;
        EB_CHECK_INT(request(&r, EVHTTP_REQ_HEAD, "/healthz", NULL, NULL, &out),
                     200);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/healthz", NULL, "x", &out),
                     405);
        EB_CHECK_STR(out.allow, "GET, HEAD");
        EB_CHECK_INT(
                request(&r, EVHTTP_REQ_DELETE, "/metrics", NULL, NULL, &out),
                405);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/nope", NULL, NULL, &out),
                     404);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/webhooks", NULL, NULL, &out),
                     404);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/metrics", NULL, NULL, &out),
                     200);
        EB_CHECK_STR(out.ctype, "text/plain; version=0.0.4; charset=utf-8");
        EB_CHECK(strstr(out.body, "# TYPE evbridge_http_responses_total "
                                  "counter") != NULL);
        EB_CHECK(strstr(out.body, "evbridge_http_responses_total{code=\"404\"}"
                                  " 2") != NULL);
        EB_CHECK(strstr(out.body, "evbridge_http_responses_total{code=\"405\"}"
                                  " 2") != NULL);
        EB_CHECK(strstr(out.body, "evbridge_webhook_held 0") != NULL);
        rig_stop(&r);
}

static void test_publish_then_200(void)
{
        struct rig r;
        struct resp out;

        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(5000), 10, 0) == 0);
        post_close(&r, "ev_ok1", &out, 0);
        EB_REQUIRE(wait_held(&r, 1, 5000) == 0);
        run_for(&r, 50);
        /* Held: published, not answered. */
        EB_CHECK_INT(out.done, 0);
        EB_CHECK_INT(r.publishes, 1);
        EB_CHECK_STR(r.pend[0].id, "ev_ok1");
        EB_CHECK_INT(eb_webhook_held(r.wh), 1);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 1);
        settle(&r, 0, 0);
        EB_CHECK_INT(run_until(&r, &out.done, 5000), 0);
        EB_CHECK_INT(out.code, 200);
        EB_CHECK(strstr(out.body, "\"published\"") != NULL);
        EB_CHECK_INT(count(&r, "close-1", "published"), 1);
        EB_CHECK_INT(eb_webhook_held(r.wh), 0);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 0);
        rig_stop(&r);
}

/* The deadline answers 503 while the publish goes on; the late callback
 * must not touch the answered request (ASan checks). */
static void test_deadline_then_late_settle(void)
{
        struct rig r;
        struct resp out;

        EB_REQUIRE(rig_start(&r, 0, 200, 10, 0) == 0);
        EB_CHECK_INT(post_close(&r, "ev_late", &out, 1), 503);
        EB_CHECK_STR(out.retry_after, "5");
        EB_CHECK(strstr(out.body, "\"deadline\"") != NULL);
        EB_CHECK_INT(count(&r, "close-1", "deadline"), 1);
        EB_CHECK_INT(eb_webhook_held(r.wh), 0);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 1);
        run_for(&r, 100);
        settle(&r, 0, 0); /* Kafka answers late */
        run_for(&r, 100);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 0);
        EB_CHECK_INT(count(&r, "close-1", "published"), 0);
        rig_stop(&r);
}

/* A retry while the first delivery is in flight joins it: one publish,
 * both answered when it settles. */
static void test_retry_joins_inflight(void)
{
        struct rig r;
        struct resp a, b, c;

        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(5000), 10, 0) == 0);
        post_close(&r, "ev_dup", &a, 0);
        EB_REQUIRE(wait_held(&r, 1, 5000) == 0);
        post_close(&r, "ev_dup", &b, 0);
        post_close(&r, "ev_other", &c, 0);
        EB_REQUIRE(wait_held(&r, 3, 5000) == 0);
        EB_CHECK_INT(r.publishes, 2); /* ev_dup once, ev_other once */
        EB_CHECK_INT(eb_webhook_held(r.wh), 3);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 2);
        EB_CHECK_INT(settle_id(&r, "ev_dup", 0), 0);
        EB_CHECK_INT(run_until(&r, &a.done, 5000), 0);
        EB_CHECK_INT(run_until(&r, &b.done, 5000), 0);
        EB_CHECK_INT(a.code, 200);
        EB_CHECK_INT(b.code, 200);
        EB_CHECK_INT(c.done, 0);
        EB_CHECK_INT(count(&r, "close-1", "published"), 1);
        EB_CHECK_INT(count(&r, "close-1", "duplicate"), 1);
        /* A failed publish: 503 for its waiter, the platform retries. */
        EB_CHECK_INT(settle_id(&r, "ev_other", -EIO), 0);
        EB_CHECK_INT(run_until(&r, &c.done, 5000), 0);
        EB_CHECK_INT(c.code, 503);
        EB_CHECK(strstr(c.body, "\"kafka_error\"") != NULL);
        EB_CHECK_STR(c.retry_after, "5");
        /* Settled and gone: the next delivery publishes again. */
        post_close(&r, "ev_dup", &a, 0);
        EB_CHECK_INT(wait_int(&r, &r.publishes, 3, 5000), 0);
        EB_CHECK_INT(settle_id(&r, "ev_dup", 0), 0);
        EB_CHECK_INT(run_until(&r, &a.done, 5000), 0);
        EB_CHECK_INT(a.code, 200);
        rig_stop(&r);
}

/* A source table a reload replaced is freed once no held request or
 * publish points into it: at once when none does, else at the next
 * webhook after they settled. */
static void test_reload_frees_tables(void)
{
        struct rig r;
        struct resp a, b;
        char err[256];
        int i;

        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(5000), 10, 0) == 0);
        for (i = 0; i < 50; i++)
                EB_CHECK_INT(eb_webhook_reload(r.wh, r.cfg, err, sizeof(err)),
                             0);
        EB_CHECK_INT((int)eb_webhook_retired(r.wh), 0);
        post_close(&r, "ev_r1", &a, 0);
        EB_REQUIRE(wait_held(&r, 1, 5000) == 0);
        EB_CHECK_INT(eb_webhook_reload(r.wh, r.cfg, err, sizeof(err)), 0);
        EB_CHECK_INT((int)eb_webhook_retired(r.wh), 1);
        EB_CHECK_INT(settle_id(&r, "ev_r1", 0), 0);
        EB_CHECK_INT(run_until(&r, &a.done, 5000), 0);
        EB_CHECK_INT(a.code, 200);
        post_close(&r, "ev_r2", &b, 0);
        EB_REQUIRE(wait_held(&r, 1, 5000) == 0);
        EB_CHECK_INT((int)eb_webhook_retired(r.wh), 0);
        EB_CHECK_INT(settle_id(&r, "ev_r2", 0), 0);
        EB_CHECK_INT(run_until(&r, &b.done, 5000), 0);
        /* ev_r1, answered after the reload, counts for close-1 too */
        EB_CHECK_INT(count(&r, "close-1", "published"), 2);
        rig_stop(&r);
}

static void test_queue_full_and_cap(void)
{
        struct rig r;
        struct resp a, b, c;

        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(5000), 2, 0) == 0);
        r.publish_rc = -EAGAIN;
        EB_CHECK_INT(post_close(&r, "ev_q", &a, 1), 503);
        EB_CHECK(strstr(a.body, "\"queue_full\"") != NULL);
        EB_CHECK_STR(a.retry_after, "5");
        EB_CHECK_INT(eb_webhook_pending(r.wh), 0);
        r.publish_rc = 0;
        /* http.max_held = 2: the third distinct event is refused at once. */
        post_close(&r, "ev_h1", &a, 0);
        post_close(&r, "ev_h2", &b, 0);
        EB_REQUIRE(wait_held(&r, 2, 5000) == 0);
        EB_CHECK_INT(post_close(&r, "ev_h3", &c, 1), 503);
        EB_CHECK(strstr(c.body, "\"overloaded\"") != NULL);
        EB_CHECK_INT(r.publishes, 3); /* ev_q, ev_h1, ev_h2 */
        EB_CHECK_INT(count(&r, "close-1", "overloaded"), 1);
        EB_CHECK_INT(count(&r, "close-1", "queue_full"), 1);
        EB_CHECK_INT(settle_id(&r, "ev_h1", 0), 0);
        EB_CHECK_INT(settle_id(&r, "ev_h2", 0), 0);
        EB_CHECK_INT(run_until(&r, &b.done, 5000), 0);
        EB_CHECK_INT(run_until(&r, &a.done, 5000), 0);
        EB_CHECK_INT(a.code, 200);
        EB_CHECK_INT(b.code, 200);
        rig_stop(&r);
}

static void test_shutdown_answers_held(void)
{
        struct rig r;
        struct resp a, b;

        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(5000), 10, 0) == 0);
        post_close(&r, "ev_s1", &a, 0);
        EB_REQUIRE(wait_held(&r, 1, 5000) == 0);
        eb_webhook_shutdown(r.wh);
        EB_CHECK_INT(eb_webhook_held(r.wh), 0);
        EB_CHECK_INT(run_until(&r, &a.done, 5000), 0);
        EB_CHECK_INT(a.code, 503);
        EB_CHECK(strstr(a.body, "\"shutting_down\"") != NULL);
        EB_CHECK_INT(post_close(&r, "ev_s2", &b, 1), 503);
        EB_CHECK(strstr(b.body, "\"shutting_down\"") != NULL);
        EB_CHECK_INT(r.publishes, 1);
        /* The first publish settles after its request was answered. */
        settle(&r, 0, 0);
        run_for(&r, 50);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 0);
        EB_CHECK_INT(eb_httpd_unsent(r.httpd), 0);
        rig_stop(&r);
}

static void test_rejections(void)
{
        static const char *const json_ct[] = {"Content-Type",
                                              "application/json", NULL};
        struct rig r;
        struct resp out;
        struct signed_req s;
        char *body = close_body("ev_rej"), *big, *bad;
        int64_t now_s = eb_now_ms() / 1000;

        EB_REQUIRE(rig_start(&r, 0, 5000, 10, 0) == 0);

        /* forged: signed with another key */
        close_sign(&s, body, now_s,
                   "5f1b2e7c9d3a5b6e8f0a1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f708192"
                   "a3b4c5");
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     401);
        EB_CHECK(strstr(out.body, "\"signature_mismatch\"") != NULL);
        /* expired: a valid signature 10 minutes old */
        close_sign(&s, body, now_s - 600, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     401);
        EB_CHECK(strstr(out.body, "\"timestamp_expired\"") != NULL);
        /* no signature */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", json_ct,
                             body, &out),
                     401);
        EB_CHECK(strstr(out.body, "\"signature_missing\"") != NULL);
        /* valid signature, wrong content type */
        close_sign(&s, body, now_s, CLOSE_KEY);
        s.hdrs[1] = "text/plain";
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     415);
        /* valid signature over truncated JSON */
        body[strlen(body) / 2] = '\0';
        close_sign(&s, body, now_s, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     400);
        EB_CHECK(strstr(out.body, "\"malformed\"") != NULL);
        /* valid JSON without an "event" object, and an event without id */
        bad = eb_xstrdup("{\"subscription_id\":\"whsub_1\"}");
        close_sign(&s, bad, now_s, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             bad, &out),
                     400);
        EB_CHECK(strstr(out.body, "\"invalid_event\"") != NULL);
        free(bad);
        bad = eb_xstrdup("{\"event\":{\"object_type\":\"lead\"}}");
        close_sign(&s, bad, now_s, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             bad, &out),
                     400);
        free(bad);
        bad = eb_xstrdup("[1,2]");
        close_sign(&s, bad, now_s, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             bad, &out),
                     400);
        free(bad);
        /* unknown source, source without webhook block, extra segments */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/nope", s.hdrs,
                             body, &out),
                     404);
        EB_CHECK(strstr(out.body, "\"unknown_source\"") != NULL);
        EB_CHECK_INT(
                request(&r, EVHTTP_REQ_POST, "/webhooks/", s.hdrs, body, &out),
                404);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-nohook",
                             s.hdrs, body, &out),
                     404);
        EB_CHECK(strstr(out.body, "\"webhook_disabled\"") != NULL);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1/a/b",
                             s.hdrs, body, &out),
                     404);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1/tok",
                             s.hdrs, body, &out),
                     404);
        /* wrong method */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/webhooks/close-1", NULL,
                             NULL, &out),
                     405);
        EB_CHECK_STR(out.allow, "POST");
        EB_CHECK_INT(request(&r, EVHTTP_REQ_PUT, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     405);
        /* over http.max_body (8 KiB): libevent's own 413 */
        big = eb_xmalloc(9000);
        memset(big, 'x', 8999);
        big[8999] = '\0';
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", json_ct,
                             big, &out),
                     413);
        free(big);
        /* not ready (e.g. state not restored): 503, nothing verified */
        r.not_ready = 1;
        close_sign(&s, body, now_s, CLOSE_KEY);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/close-1", s.hdrs,
                             body, &out),
                     503);
        EB_CHECK(strstr(out.body, "\"not_ready\"") != NULL);
        r.not_ready = 0;
        EB_CHECK_INT(r.publishes, 0);

        EB_CHECK_INT(count(&r, "close-1", "signature_mismatch"), 1);
        EB_CHECK_INT(count(&r, "close-1", "timestamp_expired"), 1);
        EB_CHECK_INT(count(&r, "close-1", "signature_missing"), 1);
        EB_CHECK_INT(count(&r, "close-1", "unsupported_content_type"), 1);
        EB_CHECK_INT(count(&r, "close-1", "malformed"), 2);
        EB_CHECK_INT(count(&r, "close-1", "invalid_event"), 2);
        EB_CHECK_INT(count(&r, "close-1", "not_found"), 1);
        EB_CHECK_INT(count(&r, "close-1", "method_not_allowed"), 2);
        EB_CHECK_INT(count(&r, "close-1", "not_ready"), 1);
        EB_CHECK_INT(count(&r, "", "unknown_source"), 2);
        EB_CHECK_INT(count(&r, "", "not_found"), 1);
        EB_CHECK_INT(count(&r, "close-nohook", "webhook_disabled"), 1);

        EB_CHECK_INT(request(&r, EVHTTP_REQ_GET, "/metrics", NULL, NULL, &out),
                     200);
        EB_CHECK(strstr(out.body, "evbridge_webhook_requests_total{source="
                                  "\"close-1\",status=\"401\",reason="
                                  "\"signature_mismatch\"} 1") != NULL);
        EB_CHECK(strstr(out.body, "evbridge_webhook_requests_total{source="
                                  "\"\",status=\"404\",reason="
                                  "\"unknown_source\"} 2") != NULL);
        EB_CHECK(strstr(out.body, "evbridge_http_responses_total{code="
                                  "\"413\"} 1") != NULL);
        /* No secret in the exposition. */
        EB_CHECK(strstr(out.body, CLOSE_KEY) == NULL);
        free(body);
        rig_stop(&r);
}

static const char kommo_body[] =
        "leads%5Bstatus%5D%5B0%5D%5Bid%5D=10701093&leads%5Bstatus%5D%5B0%5D"
        "%5Bstatus_id%5D=142&leads%5Bstatus%5D%5B0%5D%5Bpipeline_id%5D="
        "9217056&account%5Bsubdomain%5D=example&account%5Bid%5D=17769199";

static void test_kommo_triggers(void)
{
        static const char *const form[] = {
                "Content-Type", "application/x-www-form-urlencoded", NULL};
        struct rig r;
        struct resp out;

        EB_REQUIRE(rig_start(&r, 0, 5000, 10, 0) == 0);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1?token=" KOMMO_TOKEN, form,
                             kommo_body, &out),
                     200);
        EB_CHECK(strstr(out.body, "accepted as a poll trigger") != NULL);
        EB_CHECK_INT(r.triggers, 1);
        EB_CHECK_INT(r.publishes, 0);
        /* Within the second: deferred, then coalesced, one poll later. */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1/" KOMMO_TOKEN, form, kommo_body,
                             &out),
                     200);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1/kommo%2Dhook%2D1", form,
                             kommo_body, &out),
                     200);
        EB_CHECK_INT(r.triggers, 1);
        EB_CHECK_INT(wait_int(&r, &r.triggers, 2,
                              EB_WEBHOOK_TRIGGER_INTERVAL_MS + 3000),
                     0);
        run_for(&r, 100);
        EB_CHECK_INT(r.triggers, 2); /* one deferred poll for both */
        EB_CHECK_INT(count(&r, "kommo-1", "poll_trigger"), 3);

        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1?token=wrong", form, kommo_body,
                             &out),
                     401);
        EB_CHECK(strstr(out.body, "\"token_mismatch\"") != NULL);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/kommo-1/wrong",
                             form, kommo_body, &out),
                     401);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/kommo-1", form,
                             kommo_body, &out),
                     401);
        EB_CHECK(strstr(out.body, "\"token_missing\"") != NULL);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/kommo-1/%zz", form,
                             kommo_body, &out),
                     401);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1?token=" KOMMO_TOKEN, form,
                             "leads[status][0][id=1&account[id]=2", &out),
                     400);
        EB_CHECK(strstr(out.body, "\"malformed\"") != NULL);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1?token=" KOMMO_TOKEN, form,
                             "leads[status][0][id]=1", &out),
                     400);
        EB_CHECK(strstr(out.body, "\"invalid_event\"") != NULL);
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST,
                             "/webhooks/kommo-1?token=" KOMMO_TOKEN,
                             (const char *const[]){"Content-Type",
                                                   "application/json", NULL},
                             kommo_body, &out),
                     415);
        EB_CHECK_INT(r.triggers, 2);
        EB_CHECK_INT(count(&r, "kommo-1", "token_mismatch"), 3);
        EB_CHECK_INT(count(&r, "kommo-1", "token_missing"), 1);
        rig_stop(&r);
}

static void test_kota_and_standard(void)
{
        static const char body[] =
                "{\"id\":\"evt_3b1333d87d9d4fd6ad83ba7f6b0e951a\",\"type\":"
                "\"employee.created\",\"platform_id\":\"pt_1\",\"data\":{"
                "\"id\":\"ee_1\",\"employer_id\":\"er_1\",\"metadata\":null,"
                "\"resource_type\":\"employee\",\"object\":\"employee\"},"
                "\"created_at\":\"2024-12-01T00:00:00Z\",\"object\":\"event\","
                "\"version\":\"V2\"}";
        struct rig r;
        struct resp out;
        unsigned char mac[32], key[64];
        char hex[65], sighdr[256], ts[32], *msg, *b64;
        const char *hdrs[10];
        int klen;

        EB_REQUIRE(rig_start(&r, 0, 5000, 10, 0) == 0);
        /* Kota: t=<unix>,v1=<hex HMAC("<t>.<body>")> */
        snprintf(ts, sizeof(ts), "%lld", (long long)(eb_now_ms() / 1000));
        msg = eb_xasprintf("%s.%s", ts, body);
        EB_REQUIRE(eb_hmac_sha256(KOTA_SECRET, strlen(KOTA_SECRET), msg,
                                  strlen(msg), mac) == 0);
        free(msg);
        eb_hex_encode(mac, 32, hex);
        snprintf(sighdr, sizeof(sighdr), "v1=%s, t=%s", hex, ts);
        hdrs[0] = "Content-Type";
        hdrs[1] = "application/json; charset=utf-8";
        hdrs[2] = "x-kota-webhook-signature";
        hdrs[3] = sighdr;
        hdrs[4] = NULL;
        send_req(&r, EVHTTP_REQ_POST, "/webhooks/kota-1", hdrs, body,
                 strlen(body), &out);
        EB_REQUIRE(wait_int(&r, &r.npend, 1, 5000) == 0);
        EB_CHECK_STR(r.pend[0].id, "evt_3b1333d87d9d4fd6ad83ba7f6b0e951a");
        settle(&r, 0, 0);
        EB_CHECK_INT(run_until(&r, &out.done, 5000), 0);
        EB_CHECK_INT(out.code, 200);
        /* The same delivery on the Standard Webhooks source is not signed
         * for it: 401 signature_missing. */
        EB_CHECK_INT(request(&r, EVHTTP_REQ_POST, "/webhooks/kota-std", hdrs,
                             body, &out),
                     401);
        /* Standard Webhooks. */
        klen = eb_wh_base64_decode(STD_SECRET + 6, strlen(STD_SECRET) - 6, key,
                                   sizeof(key));
        EB_REQUIRE(klen > 0);
        msg = eb_xasprintf("msg_1.%s.%s", ts, body);
        EB_REQUIRE(eb_hmac_sha256(key, (size_t)klen, msg, strlen(msg), mac) ==
                   0);
        free(msg);
        b64 = eb_base64_encode(mac, 32);
        snprintf(sighdr, sizeof(sighdr), "v1,%s", b64);
        free(b64);
        hdrs[2] = "webhook-id";
        hdrs[3] = "msg_1";
        hdrs[4] = "webhook-timestamp";
        hdrs[5] = ts;
        hdrs[6] = "webhook-signature";
        hdrs[7] = sighdr;
        hdrs[8] = NULL;
        send_req(&r, EVHTTP_REQ_POST, "/webhooks/kota-std", hdrs, body,
                 strlen(body), &out);
        EB_REQUIRE(wait_int(&r, &r.npend, 2, 5000) == 0);
        settle(&r, 1, 0);
        EB_CHECK_INT(run_until(&r, &out.done, 5000), 0);
        EB_CHECK_INT(out.code, 200);
        EB_CHECK_INT(count(&r, "kota-std", "published"), 1);
        EB_CHECK_INT(count(&r, "kota-std", "signature_missing"), 1);
        rig_stop(&r);
}

static void test_bind_error(void)
{
        struct rig r;
        struct eb_config *cfg2;
        char json[4096], err[512] = "", want[128];
        eb_httpd_t *h2;
        int port;

        EB_REQUIRE(rig_start(&r, 0, 300, 10, 0) == 0);
        port = eb_httpd_port(r.httpd);
        snprintf(json, sizeof(json), cfg_fmt, port, 300, 10);
        cfg2 = eb_config_load_string(json, err, sizeof(err));
        EB_REQUIRE(cfg2 != NULL);
        h2 = eb_httpd_new(r.base, cfg2, NULL, err, sizeof(err));
        EB_CHECK(h2 == NULL);
        snprintf(want, sizeof(want),
                 "http.listen: cannot bind 127.0.0.1:%d: Address already in "
                 "use",
                 port);
        EB_CHECK_STR(err, want);
        eb_httpd_free(h2);
        eb_config_free(cfg2);
        rig_stop(&r);
}

/* ---- the real path: pipeline + real Kafka ------------------------------ */

/* Kafka paused: the webhook is answered 503 (the deadline), the retry
 * joins the publish still in flight (503 again), Kafka resumes, the
 * message is delivered, and the next retry is answered 200 as a
 * duplicate. One message in Kafka. */
static void test_kafka_down_then_back(void)
{
        const char *topics[] = {"crm.close.lead.created", NULL};
        struct eb_kmock_records recs;
        struct rig r;
        struct resp out;
        int64_t until;
        uint64_t deadlines, dups;
        size_t i, n = 0;

        EB_REQUIRE(kafka != NULL && !eb_tkafka_shared(kafka));
        EB_REQUIRE(rig_start(&r, 0, EB_T_TMOUT(400), 10, 1) == 0);
        /* A first event while Kafka is up: 200 once it is in Kafka. The
         * topic's first message may take longer than the deadline (topic
         * creation), so retry as a platform would. */
        for (i = 0; i < 20; i++)
                if (post_close(&r, "ev_up", &out, 1) == 200)
                        break;
        EB_CHECK_INT(out.code, 200);
        until = eb_mono_ms() + EB_T_TMOUT(30000);
        while (eb_webhook_pending(r.wh) > 0 && eb_mono_ms() < until)
                event_base_loop(r.base, EVLOOP_ONCE);
        deadlines = count(&r, "close-1", "deadline");
        dups = eb_pipeline_stats(r.pipeline, "close-1")->duplicates;

        EB_CHECK_INT(eb_tkafka_ctl(kafka, "pause", 0), 0);
        EB_CHECK_INT(post_close(&r, "ev_down", &out, 1), 503);
        EB_CHECK(strstr(out.body, "\"deadline\"") != NULL);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 1);
        EB_CHECK_INT(post_close(&r, "ev_down", &out, 1), 503);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 1); /* joined, not re-sent */
        EB_CHECK_INT(eb_pipeline_stats(r.pipeline, "close-1")->duplicates,
                     dups);

        EB_CHECK_INT(eb_tkafka_ctl(kafka, "resume", 0), 0);
        until = eb_mono_ms() + EB_T_TMOUT(30000);
        while (eb_webhook_pending(r.wh) > 0 && eb_mono_ms() < until)
                event_base_loop(r.base, EVLOOP_ONCE);
        EB_CHECK_INT(eb_webhook_pending(r.wh), 0);
        /* The platform's next retry: already in Kafka. */
        EB_CHECK_INT(post_close(&r, "ev_down", &out, 1), 200);
        EB_CHECK(strstr(out.body, "\"duplicate\"") != NULL);
        EB_CHECK_INT(count(&r, "close-1", "deadline"), deadlines + 2);
        EB_CHECK_INT(count(&r, "close-1", "published") +
                             count(&r, "close-1", "duplicate"),
                     2); /* the 200s: ev_up's, and ev_down's last retry */

        EB_CHECK_INT(eb_kmock_consume_all(eb_kafka_bootstrap(r.kafka), topics,
                                          EB_T_TMOUT(20000), &recs),
                     0);
        for (i = 0; i < recs.cnt; i++)
                if (recs.v[i].value &&
                    strstr(recs.v[i].value, "\"id\":\"ev_down\""))
                        n++;
        EB_CHECK_INT(n, 1);
        EB_CHECK_INT(recs.cnt, 2);
        eb_kmock_records_free(&recs);
        rig_stop(&r);
}

int main(void)
{
        signal(SIGPIPE, SIG_IGN);
        eb_log_set_level(EB_LOG_WARN);
        EB_RUN(test_health_ready_metrics);
        EB_RUN(test_publish_then_200);
        EB_RUN(test_deadline_then_late_settle);
        EB_RUN(test_retry_joins_inflight);
        EB_RUN(test_reload_frees_tables);
        EB_RUN(test_queue_full_and_cap);
        EB_RUN(test_shutdown_answers_held);
        EB_RUN(test_rejections);
        EB_RUN(test_kommo_triggers);
        EB_RUN(test_kota_and_standard);
        EB_RUN(test_bind_error);
        kafka = eb_tkafka_start(1, NULL);
        if (kafka)
                fprintf(stderr, "  info: broker: %s at %s\n",
                        eb_tkafka_describe(kafka), eb_tkafka_bootstrap(kafka));
        EB_RUN(test_kafka_down_then_back);
        eb_tkafka_stop(kafka);
        return eb_test_summary();
}
