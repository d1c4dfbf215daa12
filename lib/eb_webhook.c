#include "eb_webhook.h"

#include <errno.h>
#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>
#include <event2/keyvalq_struct.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "eb_buf.h"
#include "eb_event.h"
#include "eb_form.h"
#include "eb_json.h"
#include "eb_provider.h"
#include "eb_time.h"
#include "eb_util.h"
#include "eb_webhook_sig.h"

#define WH_MAX_NAME      100  /* source names (eb_config) */
#define WH_MAX_TOKEN     1024 /* a path or query token */
#define WH_LOG_EVERY_MS  1000 /* per-source rate limit of reject lines */
#define WH_BUCKETS_START 64

/* ---- reasons --------------------------------------------------------- */

enum wh_reason {
        R_PUBLISHED = 0,
        R_DUPLICATE,
        R_POLL_TRIGGER,
        R_MALFORMED,
        R_INVALID_EVENT,
        R_SIG_MISSING,
        R_SIG_MALFORMED,
        R_SIG_MISMATCH,
        R_TS_INVALID,
        R_TS_EXPIRED,
        R_TS_FUTURE,
        R_TOKEN_MISSING,
        R_TOKEN_MISMATCH,
        R_UNKNOWN_SOURCE,
        R_DISABLED,
        R_NOT_FOUND,
        R_METHOD,
        R_TOO_LARGE,
        R_CONTENT_TYPE,
        R_NOT_READY,
        R_OVERLOADED,
        R_QUEUE_FULL,
        R_DEADLINE,
        R_KAFKA_ERROR,
        R_SHUTDOWN,
        R_TRIGGER_FAILED,
        R_INTERNAL,
        R_MAX
};

static const struct {
        int status;
        const char *name;
} reasons[R_MAX] = {
        [R_PUBLISHED] = {200, "published"},
        [R_DUPLICATE] = {200, "duplicate"},
        [R_POLL_TRIGGER] = {200, "poll_trigger"},
        [R_MALFORMED] = {400, "malformed"},
        [R_INVALID_EVENT] = {400, "invalid_event"},
        [R_SIG_MISSING] = {401, "signature_missing"},
        [R_SIG_MALFORMED] = {401, "signature_malformed"},
        [R_SIG_MISMATCH] = {401, "signature_mismatch"},
        [R_TS_INVALID] = {401, "timestamp_invalid"},
        [R_TS_EXPIRED] = {401, "timestamp_expired"},
        [R_TS_FUTURE] = {401, "timestamp_future"},
        [R_TOKEN_MISSING] = {401, "token_missing"},
        [R_TOKEN_MISMATCH] = {401, "token_mismatch"},
        [R_UNKNOWN_SOURCE] = {404, "unknown_source"},
        [R_DISABLED] = {404, "webhook_disabled"},
        [R_NOT_FOUND] = {404, "not_found"},
        [R_METHOD] = {405, "method_not_allowed"},
        [R_TOO_LARGE] = {413, "body_too_large"},
        [R_CONTENT_TYPE] = {415, "unsupported_content_type"},
        [R_NOT_READY] = {503, "not_ready"},
        [R_OVERLOADED] = {503, "overloaded"},
        [R_QUEUE_FULL] = {503, "queue_full"},
        [R_DEADLINE] = {503, "deadline"},
        [R_KAFKA_ERROR] = {503, "kafka_error"},
        [R_SHUTDOWN] = {503, "shutting_down"},
        [R_TRIGGER_FAILED] = {503, "trigger_failed"},
        [R_INTERNAL] = {503, "internal_error"},
};

static enum wh_reason auth_reason(eb_wh_auth_t a)
{
        switch (a) {
        case EB_WH_AUTH_SIG_MISSING:
                return R_SIG_MISSING;
        case EB_WH_AUTH_SIG_MALFORMED:
                return R_SIG_MALFORMED;
        case EB_WH_AUTH_SIG_MISMATCH:
                return R_SIG_MISMATCH;
        case EB_WH_AUTH_TS_INVALID:
                return R_TS_INVALID;
        case EB_WH_AUTH_TS_EXPIRED:
                return R_TS_EXPIRED;
        case EB_WH_AUTH_TS_FUTURE:
                return R_TS_FUTURE;
        case EB_WH_AUTH_TOKEN_MISSING:
                return R_TOKEN_MISSING;
        case EB_WH_AUTH_TOKEN_MISMATCH:
                return R_TOKEN_MISMATCH;
        case EB_WH_AUTH_OK:
        case EB_WH_AUTH_ERROR:
                break;
        }
        return R_INTERNAL;
}

/* ---- state ----------------------------------------------------------- */

struct wh_pub;

struct wh_src {
        eb_webhook_t *wh;
        const struct eb_source_cfg *cfg; /* NULL: the unknown-source bucket */
        const char *name;
        int accepting; /* webhook block present and source enabled */
        const struct eb_provider *prov;
        const struct eb_provider_webhook *kind; /* prov->webhook */
        const struct eb_wh_scheme *scheme;
        struct eb_wh_key key;
        uint64_t counts[R_MAX];
        /* poll triggers (kind->trigger_check) */
        int64_t last_trigger_ms; /* monotonic; 0: never */
        struct event *trigger_timer;
        uint64_t trig_now, trig_deferred, trig_coalesced;
        /* log rate limit */
        int64_t log_quiet_until;
        uint64_t log_suppressed;
        /* held requests and publishes pointing here: a table a reload
         * replaced is freed once all its sources are at 0 */
        unsigned refs;
};

/* A request waiting for its answer. */
struct wh_held {
        struct wh_held *prev, *next;   /* eb_webhook_s.held list */
        struct wh_held *wprev, *wnext; /* its publish's waiters */
        eb_webhook_t *wh;
        eb_httpd_t *h;
        struct wh_src *src;
        struct evhttp_request *req;
        struct wh_pub *pub;
        struct event *deadline;
        int64_t start_us;
        int attached; /* joined a publish another request started */
};

/* A publish in flight: one per distinct event (dedupe key). */
struct wh_pub {
        struct wh_pub *hnext; /* hash chain */
        eb_webhook_t *wh;
        struct wh_src *src;
        char *key;
        size_t klen;
        uint64_t hash;
        struct wh_held *waiters;
        int duplicate; /* the sink dropped it as already published */
};

static const double ack_bounds[] = {
        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10};

/* A source table replaced by a reload: requests and publishes in flight
 * may still point into it, so it lives until none does (retired_sweep()). */
struct wh_retired {
        struct wh_retired *next;
        struct wh_src *srcs;
        size_t nsrcs;
};

struct eb_webhook_s {
        struct event_base *base;
        const struct eb_config *cfg;
        struct eb_webhook_deps deps;
        struct wh_src *srcs;
        size_t nsrcs;
        struct wh_retired *retired;
        struct wh_src unknown;
        struct wh_held *held;
        int nheld;
        struct wh_pub **buckets;
        size_t nbuckets;
        int npubs;
        int closing;
        struct eb_histogram ack; /* arrival -> answer of held requests */
};

/* ---- config ---------------------------------------------------------- */

static int check_source(const struct eb_source_cfg *s, size_t i,
                        struct eb_wh_key *key,
                        const struct eb_wh_scheme **schemep, char *errstr,
                        size_t errstr_size)
{
        const struct eb_provider *prov = eb_provider_lookup(s->provider);
        const struct eb_provider_webhook *k = prov ? prov->webhook : NULL;
        const char *sname = s->webhook_scheme;
        const struct eb_wh_scheme *sc;
        const char *what;
        char why[256];

        if (!k) {
                snprintf(errstr, errstr_size,
                         "sources[%zu].webhook: provider \"%s\" does not "
                         "take webhooks",
                         i, s->provider);
                return -EINVAL;
        }
        if (!sname)
                sname = k->scheme->name;
        sc = eb_wh_scheme_lookup(sname);
        if (!sc) {
                snprintf(errstr, errstr_size,
                         "sources[%zu].webhook.scheme: unknown scheme "
                         "\"%.60s\" (expected one of: %s)",
                         i, sname, eb_wh_scheme_names());
                return -EINVAL;
        }
        what = eb_wh_scheme_uses_token(sc) ? s->webhook_token
                                           : s->webhook_secret;
        if (!what) {
                snprintf(errstr, errstr_size,
                         "sources[%zu].webhook.%s: required by scheme "
                         "\"%s\"%s",
                         i, eb_wh_scheme_uses_token(sc) ? "token" : "secret",
                         sname,
                         eb_wh_scheme_uses_token(sc)
                                 ? " (the platform signs nothing: the URL "
                                   "carries this token)"
                                 : "");
                return -EINVAL;
        }
        if (eb_wh_key_init(sc, what, key, why, sizeof(why))) {
                eb_wh_key_fini(key);
                snprintf(errstr, errstr_size, "sources[%zu].webhook.%s: %s", i,
                         eb_wh_scheme_uses_token(sc) ? "token" : "secret", why);
                return -EINVAL;
        }
        *schemep = sc;
        return 0;
}

int eb_webhook_check_config(const struct eb_config *cfg, char *errstr,
                            size_t errstr_size)
{
        size_t i;

        for (i = 0; i < cfg->sources_cnt; i++) {
                const struct eb_source_cfg *s = &cfg->sources[i];
                const struct eb_wh_scheme *sc;
                struct eb_wh_key key;

                /* A disabled source takes no webhooks: its block is inert
                 * (checked once the source is enabled). */
                if (!s->webhook_enabled || !s->enabled)
                        continue;
                memset(&key, 0, sizeof(key));
                if (check_source(s, i, &key, &sc, errstr, errstr_size))
                        return -EINVAL;
                eb_wh_key_fini(&key);
        }
        return 0;
}

/* ---- answering ------------------------------------------------------- */

static void log_answer(struct wh_src *src, enum wh_reason r, const char *detail)
{
        int64_t now = eb_mono_ms();
        int status = reasons[r].status;

        if (status == 200) {
                eb_debug("webhook", "source=%s status=200 reason=%s", src->name,
                         reasons[r].name);
                return;
        }
        if (now < src->log_quiet_until) {
                src->log_suppressed++;
                return;
        }
        src->log_quiet_until = now + WH_LOG_EVERY_MS;
        eb_log(status >= 500 ? EB_LOG_WARN : EB_LOG_INFO, "webhook",
               "source=%s status=%d reason=%s%s%s (%llu earlier rejections "
               "suppressed)",
               src->name[0] ? src->name : "(unknown)", status, reasons[r].name,
               detail ? ": " : "", detail ? detail : "",
               (unsigned long long)src->log_suppressed);
        src->log_suppressed = 0;
}

/* Where an answer about @p src is counted: a request held across a reload
 * points into the table that reload replaced, whose counters /metrics no
 * longer shows; the source of the same name in the current table, if
 * there is one, counts it instead. */
static struct wh_src *counted(struct wh_src *src)
{
        eb_webhook_t *wh = src->wh;
        size_t i;

        if (!src->cfg || (src >= wh->srcs && src < wh->srcs + wh->nsrcs))
                return src;
        for (i = 0; i < wh->nsrcs; i++)
                if (!strcmp(wh->srcs[i].name, src->name))
                        return &wh->srcs[i];
        return src;
}

static void answer(eb_httpd_t *h, struct evhttp_request *req,
                   struct wh_src *src, enum wh_reason r, const char *detail)
{
        static const char *const allow[] = {"Allow", "POST", NULL};
        char retry[16];
        const char *retry_hdr[] = {"Retry-After", retry, NULL};
        int status = reasons[r].status;
        char body[160];

        counted(src)->counts[r]++;
        log_answer(src, r, detail);
        if (status == 200)
                snprintf(body, sizeof(body),
                         "{\"ok\":true,\"result\":\"%s\"%s}", reasons[r].name,
                         r == R_POLL_TRIGGER ? ",\"detail\":\"accepted as a "
                                               "poll trigger\""
                                             : "");
        else
                snprintf(body, sizeof(body), "{\"ok\":false,\"reason\":\"%s\"}",
                         reasons[r].name);
        snprintf(retry, sizeof(retry), "%d", EB_WEBHOOK_RETRY_AFTER_S);
        eb_httpd_reply(h, req, status,
                       status == 503   ? retry_hdr
                       : status == 405 ? allow
                                       : NULL,
                       "application/json", body, strlen(body));
}

/* ---- publishes in flight, by dedupe key ------------------------------- */

static struct wh_pub *pub_find(eb_webhook_t *wh, const char *key, size_t klen,
                               uint64_t hash)
{
        struct wh_pub *p;

        if (!wh->nbuckets)
                return NULL;
        for (p = wh->buckets[hash & (wh->nbuckets - 1)]; p; p = p->hnext)
                if (p->hash == hash && p->klen == klen &&
                    !memcmp(p->key, key, klen))
                        return p;
        return NULL;
}

static void pub_insert(eb_webhook_t *wh, struct wh_pub *pub)
{
        size_t i;

        if ((size_t)wh->npubs + 1 > wh->nbuckets) {
                size_t n = wh->nbuckets ? wh->nbuckets * 2 : WH_BUCKETS_START;
                struct wh_pub **nb = eb_xcalloc(n, sizeof(*nb));

                for (i = 0; i < wh->nbuckets; i++) {
                        struct wh_pub *p = wh->buckets[i], *next;
                        for (; p; p = next) {
                                next = p->hnext;
                                p->hnext = nb[p->hash & (n - 1)];
                                nb[p->hash & (n - 1)] = p;
                        }
                }
                free(wh->buckets);
                wh->buckets = nb;
                wh->nbuckets = n;
        }
        i = pub->hash & (wh->nbuckets - 1);
        pub->hnext = wh->buckets[i];
        wh->buckets[i] = pub;
        wh->npubs++;
}

static void pub_remove(eb_webhook_t *wh, struct wh_pub *pub)
{
        struct wh_pub **pp = &wh->buckets[pub->hash & (wh->nbuckets - 1)];

        for (; *pp; pp = &(*pp)->hnext) {
                if (*pp == pub) {
                        *pp = pub->hnext;
                        wh->npubs--;
                        return;
                }
        }
}

static void pub_free(struct wh_pub *pub)
{
        pub->src->refs--;
        free(pub->key);
        free(pub);
}

/* ---- held requests --------------------------------------------------- */

/* Unlink @p hd from everything and free it (its request was answered). */
static void held_release(struct wh_held *hd)
{
        eb_webhook_t *wh = hd->wh;

        if (hd->pub) {
                if (hd->wprev)
                        hd->wprev->wnext = hd->wnext;
                else
                        hd->pub->waiters = hd->wnext;
                if (hd->wnext)
                        hd->wnext->wprev = hd->wprev;
        }
        if (hd->prev)
                hd->prev->next = hd->next;
        else
                wh->held = hd->next;
        if (hd->next)
                hd->next->prev = hd->prev;
        wh->nheld--;
        hd->src->refs--;
        if (hd->deadline)
                event_free(hd->deadline);
        free(hd);
}

static void held_answer(struct wh_held *hd, enum wh_reason r)
{
        eb_webhook_t *wh = hd->wh;

        eb_histogram_observe(&wh->ack,
                             (double)(eb_mono_us() - hd->start_us) / 1e6);
        answer(hd->h, hd->req, hd->src, r, NULL);
        held_release(hd);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
        struct wh_held *hd = arg;

        (void)fd;
        (void)what;
        /* The publish goes on; its callback will find this request gone
         * from its waiters and touch nothing of it. */
        held_answer(hd, R_DEADLINE);
}

/* The sink's done callback: every waiter gets its answer now. */
static void on_published(void *arg, int err)
{
        struct wh_pub *pub = arg;
        eb_webhook_t *wh = pub->wh;

        /* The pipeline logs the delivery failure itself. */
        if (err)
                eb_debug("webhook", "source=%s publish failed: %s",
                         pub->src->name, strerror(-err));
        while (pub->waiters) {
                struct wh_held *hd = pub->waiters;
                enum wh_reason r = R_KAFKA_ERROR;

                if (!err)
                        r = hd->attached || pub->duplicate ? R_DUPLICATE
                                                           : R_PUBLISHED;
                held_answer(hd, r);
        }
        pub_remove(wh, pub);
        pub_free(pub);
}

/* Hold @p req on @p pub until it settles or the deadline passes.
 * @returns 0, or -ENOMEM (then nothing is held: answer it). */
static int hold(eb_webhook_t *wh, eb_httpd_t *h, struct evhttp_request *req,
                struct wh_src *src, struct wh_pub *pub, int attached,
                int64_t start_us)
{
        struct wh_held *hd = eb_xcalloc(1, sizeof(*hd));
        int64_t ms = wh->cfg->webhook_deadline_ms;
        struct timeval tv;

        hd->deadline = evtimer_new(wh->base, on_deadline, hd);
        if (!hd->deadline) {
                free(hd);
                return -ENOMEM;
        }
        hd->wh = wh;
        hd->h = h;
        hd->src = src;
        src->refs++;
        hd->req = req;
        hd->pub = pub;
        hd->attached = attached;
        hd->start_us = start_us;
        hd->wnext = pub->waiters;
        if (pub->waiters)
                pub->waiters->wprev = hd;
        pub->waiters = hd;
        hd->next = wh->held;
        if (wh->held)
                wh->held->prev = hd;
        wh->held = hd;
        wh->nheld++;
        tv.tv_sec = (time_t)(ms / 1000);
        tv.tv_usec = (suseconds_t)(ms % 1000) * 1000;
        evtimer_add(hd->deadline, &tv);
        return 0;
}

/* ---- poll triggers ---------------------------------------------- */

static void on_trigger_timer(evutil_socket_t fd, short what, void *arg)
{
        struct wh_src *src = arg;
        eb_webhook_t *wh = src->wh;
        int rc;

        (void)fd;
        (void)what;
        src->last_trigger_ms = eb_mono_ms();
        rc = wh->deps.trigger(wh->deps.trigger_opaque, src->name);
        if (rc)
                eb_warn("webhook", "source=%s deferred poll trigger failed: %s",
                        src->name, strerror(-rc));
}

static int trigger_poll(eb_webhook_t *wh, struct wh_src *src)
{
        int64_t now = eb_mono_ms();
        struct timeval tv;
        int64_t wait;
        int rc;

        if (!wh->deps.trigger)
                return -ENOTSUP;
        if (src->trigger_timer && evtimer_pending(src->trigger_timer, NULL)) {
                src->trig_coalesced++;
                return 0;
        }
        if (!src->last_trigger_ms ||
            now - src->last_trigger_ms >= EB_WEBHOOK_TRIGGER_INTERVAL_MS) {
                rc = wh->deps.trigger(wh->deps.trigger_opaque, src->name);
                if (rc)
                        return rc;
                src->last_trigger_ms = now;
                src->trig_now++;
                return 0;
        }
        /* Too soon after the last one: one deferred trigger at the end of
         * the interval covers this and every later one until then. */
        if (!src->trigger_timer)
                return -ENOMEM;
        wait = src->last_trigger_ms + EB_WEBHOOK_TRIGGER_INTERVAL_MS - now;
        tv.tv_sec = (time_t)(wait / 1000);
        tv.tv_usec = (suseconds_t)(wait % 1000) * 1000;
        evtimer_add(src->trigger_timer, &tv);
        src->trig_deferred++;
        return 0;
}

/* ---- the request ----------------------------------------------------- */

static const char *req_header(void *hctx, const char *name)
{
        return evhttp_find_header(evhttp_request_get_input_headers(hctx), name);
}

/* "application/json; charset=utf-8" is "application/json". */
static int media_type_is(const char *ct, const char *want)
{
        size_t n;

        if (!ct)
                return 0;
        while (*ct == ' ' || *ct == '\t')
                ct++;
        n = strcspn(ct, "; \t");
        return n == strlen(want) && !strncasecmp(ct, want, n);
}

static struct wh_src *src_lookup(eb_webhook_t *wh, const char *name, size_t n)
{
        size_t i;

        for (i = 0; i < wh->nsrcs; i++) {
                const char *s = wh->srcs[i].name;
                if (strlen(s) == n && !memcmp(s, name, n))
                        return &wh->srcs[i];
        }
        return NULL;
}

static void publish(eb_webhook_t *wh, eb_httpd_t *h, struct evhttp_request *req,
                    struct wh_src *src, struct eb_event *evt, int64_t start_us)
{
        struct eb_event **evts;
        struct wh_pub *pub;
        uint64_t hash, dup_before = 0;
        size_t klen = 0;
        char *key;
        int rc;

        if (wh->nheld >= wh->cfg->http_max_held) {
                eb_event_free(evt);
                answer(h, req, src, R_OVERLOADED, "http.max_held reached");
                return;
        }
        key = eb_event_dedupe_key(evt, &klen);
        hash = eb_fnv1a64(key, klen);
        pub = pub_find(wh, key, klen, hash);
        if (pub) {
                /* The same event is already on its way to Kafka (the
                 * platform retried, or sent it twice): wait for that
                 * publish instead of starting another. */
                free(key);
                eb_event_free(evt);
                if (hold(wh, h, req, src, pub, 1, start_us))
                        answer(h, req, src, R_INTERNAL, "out of memory");
                return;
        }
        pub = eb_xcalloc(1, sizeof(*pub));
        pub->wh = wh;
        pub->src = src;
        src->refs++;
        pub->key = key;
        pub->klen = klen;
        pub->hash = hash;
        evts = eb_xmalloc(sizeof(*evts));
        evts[0] = evt;
        if (wh->deps.pipeline)
                dup_before = eb_pipeline_stats(wh->deps.pipeline, src->name)
                                     ->duplicates;
        /* The sink takes the events whatever it returns; on success it
         * calls on_published exactly once, later, from the loop. */
        rc = wh->deps.sink.publish(wh->deps.sink.opaque, src->cfg, evts, 1,
                                   NULL, on_published, pub);
        if (rc) {
                pub_free(pub);
                answer(h, req, src, rc == -EAGAIN ? R_QUEUE_FULL : R_INTERNAL,
                       strerror(-rc));
                return;
        }
        if (wh->deps.pipeline)
                pub->duplicate = eb_pipeline_stats(wh->deps.pipeline, src->name)
                                         ->duplicates > dup_before;
        pub_insert(wh, pub);
        if (hold(wh, h, req, src, pub, 0, start_us))
                answer(h, req, src, R_INTERNAL, "out of memory");
}

/* The token in the URL: "/webhooks/<name>/<token>" or "?token=". */
static char *url_token(struct evhttp_request *req, const char *seg, int *bad)
{
        const struct evhttp_uri *uri = evhttp_request_get_evhttp_uri(req);
        struct eb_buf b;
        char *tok;

        *bad = 0;
        if (seg && *seg) {
                eb_buf_init(&b, WH_MAX_TOKEN);
                if (eb_form_decode(seg, strlen(seg), 0, &b)) {
                        eb_buf_fini(&b);
                        *bad = 1;
                        return NULL;
                }
                return eb_buf_take(&b, NULL);
        }
        tok = eb_form_query_get(uri ? evhttp_uri_get_query(uri) : NULL,
                                "token");
        if (tok && strlen(tok) > WH_MAX_TOKEN) {
                free(tok);
                *bad = 1;
                return NULL;
        }
        return tok;
}

/* The checks before the body is read: the path names an accepting source,
 * the method is POST, the intake is open. @returns the source, or NULL
 * once the request is answered. */
static struct wh_src *admit(eb_webhook_t *wh, eb_httpd_t *h,
                            struct evhttp_request *req, const char *rest,
                            const char *slash)
{
        size_t nlen = slash ? (size_t)(slash - rest) : strlen(rest);
        const char *why = NULL;
        struct wh_src *src;

        if (slash && strchr(slash + 1, '/')) {
                answer(h, req, &wh->unknown, R_NOT_FOUND, NULL);
                return NULL;
        }
        src = nlen && nlen <= WH_MAX_NAME ? src_lookup(wh, rest, nlen) : NULL;
        if (!src) {
                answer(h, req, &wh->unknown, R_UNKNOWN_SOURCE, NULL);
                return NULL;
        }
        if (!src->accepting) {
                answer(h, req, src, R_DISABLED, NULL);
                return NULL;
        }
        if (slash && slash[1] && !eb_wh_scheme_uses_token(src->scheme)) {
                /* A path token means nothing to a signed scheme. */
                answer(h, req, src, R_NOT_FOUND, NULL);
                return NULL;
        }
        if (evhttp_request_get_command(req) != EVHTTP_REQ_POST) {
                answer(h, req, src, R_METHOD, NULL);
                return NULL;
        }
        if (wh->closing) {
                answer(h, req, src, R_SHUTDOWN, NULL);
                return NULL;
        }
        if (wh->deps.ready && !wh->deps.ready(wh->deps.ready_opaque, &why)) {
                answer(h, req, src, R_NOT_READY, why);
                return NULL;
        }
        return src;
}

/* Authenticate the request with the source's scheme. @returns 0, or -1
 * once the request is answered. */
static int authenticate(eb_httpd_t *h, struct evhttp_request *req,
                        struct wh_src *src, const char *slash,
                        const unsigned char *body, size_t len)
{
        struct eb_wh_input vin;
        eb_wh_auth_t auth;
        char *token = NULL;
        int bad = 0;

        if (eb_wh_scheme_uses_token(src->scheme)) {
                token = url_token(req, slash ? slash + 1 : NULL, &bad);
                if (bad) {
                        answer(h, req, src, R_TOKEN_MISMATCH, NULL);
                        return -1;
                }
        }
        memset(&vin, 0, sizeof(vin));
        vin.header = req_header;
        vin.hctx = req;
        vin.body = body;
        vin.body_len = len;
        vin.token = token;
        vin.now_ms = eb_now_ms();
        vin.tolerance_ms = src->cfg->webhook_tolerance_ms;
        auth = eb_wh_verify(src->scheme, &src->key, &vin, NULL);
        free(token);
        if (auth != EB_WH_AUTH_OK) {
                answer(h, req, src, auth_reason(auth), NULL);
                return -1;
        }
        return 0;
}

/* Parse the body as the provider's media type says: a form with eb_form,
 * anything else as a JSON object. @returns new object, or NULL with why. */
static json_t *parse_body(const struct wh_src *src, const unsigned char *body,
                          size_t len, char *err, size_t err_size)
{
        json_error_t jerr;
        json_t *root;

        if (media_type_is(src->kind->content_type,
                          "application/x-www-form-urlencoded"))
                return eb_form_parse((const char *)body, len, NULL, err,
                                     err_size);
        root = eb_json_loadb((const char *)body, len, JSON_REJECT_DUPLICATES,
                             &jerr);
        if (root && json_is_object(root))
                return root;
        /* jansson's text may quote the body: give the place only. */
        if (root)
                snprintf(err, err_size, "not a JSON object");
        else
                snprintf(err, err_size, "invalid JSON at line %d column %d",
                         jerr.line, jerr.column);
        json_decref(root);
        return NULL;
}

/* A poll trigger: the provider checks the body's shape, then the source
 * is polled (now or deferred). Takes @p body. */
static void take_trigger(eb_webhook_t *wh, eb_httpd_t *h,
                         struct evhttp_request *req, struct wh_src *src,
                         json_t *body)
{
        char why[256];
        int rc;

        rc = src->kind->trigger_check(body, why, sizeof(why));
        json_decref(body);
        if (rc) {
                answer(h, req, src, R_INVALID_EVENT, why);
                return;
        }
        rc = trigger_poll(wh, src);
        if (rc)
                answer(h, req, src, R_TRIGGER_FAILED, strerror(-rc));
        else
                answer(h, req, src, R_POLL_TRIGGER, NULL);
}

/* A webhook that carries its event: normalize it with the provider and
 * publish it. Takes @p root. */
static void take_event(eb_webhook_t *wh, eb_httpd_t *h,
                       struct evhttp_request *req, struct wh_src *src,
                       json_t *root, int64_t start_us)
{
        const char *key = src->kind->event_key;
        json_t *ev = key ? json_object_get(root, key) : root;
        struct eb_event *evt;
        char err[256];

        if (!json_is_object(ev)) {
                json_decref(root);
                snprintf(err, sizeof(err), "no \"%s\" object in the body",
                         key ? key : "event");
                answer(h, req, src, R_INVALID_EVENT, err);
                return;
        }
        evt = src->prov->normalize(src->cfg, ev, err, sizeof(err));
        json_decref(root);
        if (!evt) {
                answer(h, req, src, R_INVALID_EVENT, err);
                return;
        }
        publish(wh, h, req, src, evt, start_us);
}

static void retired_sweep(eb_webhook_t *wh);

void eb_webhook_handle(eb_httpd_t *h, struct evhttp_request *req,
                       const char *rest, void *opaque)
{
        eb_webhook_t *wh = opaque;
        int64_t start_us = eb_mono_us();

        retired_sweep(wh);
        const char *slash = strchr(rest, '/');
        const unsigned char *body;
        struct evbuffer *in;
        struct wh_src *src;
        json_t *root;
        const char *ct;
        char err[256];
        size_t len;

        src = admit(wh, h, req, rest, slash);
        if (!src)
                return;
        in = evhttp_request_get_input_buffer(req);
        len = evbuffer_get_length(in);
        if (len > wh->cfg->http_max_body) {
                answer(h, req, src, R_TOO_LARGE, NULL);
                return;
        }
        body = len ? evbuffer_pullup(in, -1) : (const unsigned char *)"";
        if (!body) {
                answer(h, req, src, R_INTERNAL, "cannot read the body");
                return;
        }
        if (authenticate(h, req, src, slash, body, len))
                return;
        ct = evhttp_find_header(evhttp_request_get_input_headers(req),
                                "Content-Type");
        if (!media_type_is(ct, src->kind->content_type)) {
                answer(h, req, src, R_CONTENT_TYPE, src->kind->content_type);
                return;
        }
        root = parse_body(src, body, len, err, sizeof(err));
        if (!root) {
                answer(h, req, src, R_MALFORMED, err);
                return;
        }
        if (src->kind->trigger_check)
                take_trigger(wh, h, req, src, root);
        else
                take_event(wh, h, req, src, root, start_us);
}

/* ---- life cycle ------------------------------------------------------ */

static int build_sources(eb_webhook_t *wh, const struct eb_config *cfg,
                         struct wh_src **srcsp, size_t *np, char *errstr,
                         size_t errstr_size);

eb_webhook_t *eb_webhook_new(struct event_base *base,
                             const struct eb_config *cfg,
                             const struct eb_webhook_deps *deps, char *errstr,
                             size_t errstr_size)
{
        eb_webhook_t *wh = eb_xcalloc(1, sizeof(*wh));

        wh->base = base;
        wh->cfg = cfg;
        wh->deps = *deps;
        wh->unknown.wh = wh;
        wh->unknown.name = "";
        eb_histogram_init(&wh->ack, ack_bounds,
                          sizeof(ack_bounds) / sizeof(ack_bounds[0]));
        if (build_sources(wh, cfg, &wh->srcs, &wh->nsrcs, errstr, errstr_size))
                goto err;
        return wh;
err:
        eb_webhook_free(wh);
        return NULL;
}

static void free_sources(struct wh_src *srcs, size_t n)
{
        size_t i;

        for (i = 0; i < n; i++) {
                eb_wh_key_fini(&srcs[i].key);
                if (srcs[i].trigger_timer)
                        event_free(srcs[i].trigger_timer);
        }
        free(srcs);
}

/* Free the tables reloads replaced that nothing points into any more.
 * Called where no callback is running that could still hold one of their
 * sources: at a reload and when a request comes in. */
static void retired_sweep(eb_webhook_t *wh)
{
        struct wh_retired **rp = &wh->retired, *r;
        size_t i;

        while ((r = *rp)) {
                for (i = 0; i < r->nsrcs && !r->srcs[i].refs; i++)
                        ;
                if (i < r->nsrcs) {
                        rp = &r->next;
                        continue;
                }
                *rp = r->next;
                free_sources(r->srcs, r->nsrcs);
                free(r);
        }
}

size_t eb_webhook_retired(const eb_webhook_t *wh)
{
        const struct wh_retired *r;
        size_t n = 0;

        for (r = wh->retired; r; r = r->next)
                n++;
        return n;
}

/* Build the per-source table of @p cfg. On error nothing is left to free
 * (the partial table is freed here). */
static int build_sources(eb_webhook_t *wh, const struct eb_config *cfg,
                         struct wh_src **srcsp, size_t *np, char *errstr,
                         size_t errstr_size)
{
        size_t n = cfg->sources_cnt, i;
        struct wh_src *srcs = eb_xcalloc(n ? n : 1, sizeof(*srcs));

        for (i = 0; i < n; i++) {
                const struct eb_source_cfg *sc = &cfg->sources[i];
                struct wh_src *s = &srcs[i];

                s->wh = wh;
                s->cfg = sc;
                s->name = sc->name;
                if (!sc->webhook_enabled || !sc->enabled)
                        continue;
                if (check_source(sc, i, &s->key, &s->scheme, errstr,
                                 errstr_size))
                        goto err;
                s->prov = eb_provider_lookup(sc->provider);
                s->kind = s->prov->webhook; /* check_source found both */
                if (s->kind->trigger_check) {
                        s->trigger_timer =
                                evtimer_new(wh->base, on_trigger_timer, s);
                        if (!s->trigger_timer) {
                                snprintf(errstr, errstr_size,
                                         "cannot create a timer");
                                goto err;
                        }
                }
                s->accepting = 1;
                eb_info("webhook",
                        "source=%s accepts webhooks at /webhooks/%s "
                        "(scheme %s%s)",
                        s->name, s->name, eb_wh_scheme_name(s->scheme),
                        s->kind->trigger_check ? ", as poll triggers" : "");
        }
        *srcsp = srcs;
        *np = n;
        return 0;
err:
        free_sources(srcs, n);
        return -EINVAL;
}

int eb_webhook_reload(eb_webhook_t *wh, const struct eb_config *cfg,
                      char *errstr, size_t errstr_size)
{
        struct wh_src *srcs = NULL;
        struct wh_retired *r;
        size_t n = 0, i, j;

        if (build_sources(wh, cfg, &srcs, &n, errstr, errstr_size))
                return -EINVAL;
        /* Counters follow a source that keeps its name, so /metrics does
         * not see them reset by a reload. */
        for (i = 0; i < n; i++) {
                for (j = 0; j < wh->nsrcs; j++) {
                        if (strcmp(srcs[i].name, wh->srcs[j].name))
                                continue;
                        memcpy(srcs[i].counts, wh->srcs[j].counts,
                               sizeof(srcs[i].counts));
                        srcs[i].trig_now = wh->srcs[j].trig_now;
                        srcs[i].trig_deferred = wh->srcs[j].trig_deferred;
                        srcs[i].trig_coalesced = wh->srcs[j].trig_coalesced;
                        srcs[i].last_trigger_ms = wh->srcs[j].last_trigger_ms;
                }
        }
        for (j = 0; j < wh->nsrcs; j++)
                if (wh->srcs[j].trigger_timer)
                        evtimer_del(wh->srcs[j].trigger_timer);
        r = eb_xcalloc(1, sizeof(*r));
        r->srcs = wh->srcs;
        r->nsrcs = wh->nsrcs;
        r->next = wh->retired;
        wh->retired = r;
        wh->srcs = srcs;
        wh->nsrcs = n;
        wh->cfg = cfg;
        retired_sweep(wh);
        return 0;
}

void eb_webhook_shutdown(eb_webhook_t *wh)
{
        size_t i;

        wh->closing = 1;
        if (wh->nheld)
                eb_info("webhook",
                        "shutting down: answering %d held webhook(s) 503",
                        wh->nheld);
        while (wh->held)
                held_answer(wh->held, R_SHUTDOWN);
        for (i = 0; i < wh->nsrcs; i++)
                if (wh->srcs[i].trigger_timer)
                        evtimer_del(wh->srcs[i].trigger_timer);
}

int eb_webhook_held(const eb_webhook_t *wh)
{
        return wh->nheld;
}

int eb_webhook_pending(const eb_webhook_t *wh)
{
        return wh->npubs;
}

uint64_t eb_webhook_count(const eb_webhook_t *wh, const char *source,
                          const char *reason)
{
        const struct wh_src *src = NULL;
        size_t i;
        int r;

        if (!*source)
                src = &wh->unknown;
        for (i = 0; !src && i < wh->nsrcs; i++)
                if (!strcmp(wh->srcs[i].name, source))
                        src = &wh->srcs[i];
        if (!src)
                return 0;
        for (r = 0; r < R_MAX; r++)
                if (!strcmp(reasons[r].name, reason))
                        return src->counts[r];
        return 0;
}

static void collect_src(struct eb_prom *w, const struct wh_src *src)
{
        char status[8];
        int r;

        for (r = 0; r < R_MAX; r++) {
                if (!src->counts[r])
                        continue;
                snprintf(status, sizeof(status), "%d", reasons[r].status);
                eb_prom_sample(w, NULL,
                               (const char *[]){"source", src->name, "status",
                                                status, "reason",
                                                reasons[r].name, NULL},
                               (double)src->counts[r]);
        }
}

void eb_webhook_collect(struct eb_prom *w, void *opaque)
{
        eb_webhook_t *wh = opaque;
        size_t i;

        eb_prom_family(w, "evbridge_webhook_requests_total", "counter",
                       "Webhook requests answered, by source (\"\" for an "
                       "unknown one), HTTP status and reason.");
        collect_src(w, &wh->unknown);
        for (i = 0; i < wh->nsrcs; i++)
                collect_src(w, &wh->srcs[i]);

        eb_prom_family(w, "evbridge_webhook_held", "gauge",
                       "Webhook requests held until their event is in "
                       "Kafka.");
        eb_prom_sample(w, NULL, NULL, (double)wh->nheld);
        eb_prom_family(w, "evbridge_webhook_publishes_pending", "gauge",
                       "Webhook events handed to the publisher whose "
                       "delivery is not settled yet.");
        eb_prom_sample(w, NULL, NULL, (double)wh->npubs);

        eb_prom_family(w, "evbridge_webhook_poll_triggers_total", "counter",
                       "Webhooks taken as poll triggers (providers whose "
                       "webhooks carry no event), by result: "
                       "immediate, deferred (rate-limited to one per second "
                       "per source), coalesced (a deferred one was already "
                       "due).");
        for (i = 0; i < wh->nsrcs; i++) {
                const struct wh_src *s = &wh->srcs[i];
                const char *n = s->name;

                if (!s->accepting || !s->kind->trigger_check)
                        continue;
                eb_prom_sample(w, NULL,
                               (const char *[]){"source", n, "result",
                                                "immediate", NULL},
                               (double)s->trig_now);
                eb_prom_sample(w, NULL,
                               (const char *[]){"source", n, "result",
                                                "deferred", NULL},
                               (double)s->trig_deferred);
                eb_prom_sample(w, NULL,
                               (const char *[]){"source", n, "result",
                                                "coalesced", NULL},
                               (double)s->trig_coalesced);
        }

        eb_prom_family(w, "evbridge_webhook_response_seconds", "histogram",
                       "Seconds from arrival to answer of webhook requests "
                       "held for Kafka.");
        eb_prom_histogram(w, NULL, &wh->ack);
}

void eb_webhook_free(eb_webhook_t *wh)
{
        size_t i;

        if (!wh)
                return;
        /* Unanswered requests belong to evhttp, which frees them. */
        while (wh->held)
                held_release(wh->held);
        for (i = 0; i < wh->nbuckets; i++) {
                while (wh->buckets[i]) {
                        struct wh_pub *p = wh->buckets[i];
                        wh->buckets[i] = p->hnext;
                        pub_free(p);
                }
        }
        free(wh->buckets);
        free_sources(wh->srcs, wh->nsrcs);
        while (wh->retired) {
                struct wh_retired *r = wh->retired;
                wh->retired = r->next;
                free_sources(r->srcs, r->nsrcs);
                free(r);
        }
        eb_histogram_fini(&wh->ack);
        free(wh);
}
