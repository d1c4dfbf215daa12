/*
 * HTTP sink: POST every event, one at a time and in order, in CloudEvents
 * HTTP structured mode (Content-Type: application/cloudevents+json, body =
 * the envelope). A 2xx is delivery. 5xx, 408, 429, timeouts and connection
 * errors are retried with exponential backoff (and Retry-After when the
 * server sends one) up to --retries attempts; anything else, or running
 * out of attempts, stops the replay with a resume position at the failed
 * event. The blocking easy interface is enough: one request at a time
 * keeps per-entity order, and the connection is reused.
 */
#include <curl/curl.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "eb_time.h"
#include "eb_util.h"
#include "replay.h"

#define RP_HTTP_MAX_RESPONSE (64 * 1024) /* read and discarded */

struct http_sink {
        struct rp_sink_s base;
        CURL *easy;
        struct curl_slist *hdrs;
        char errbuf[CURL_ERROR_SIZE];
        int64_t retry_after_ms;
        size_t body_seen;
        uint64_t posts, retries;
        unsigned seed;
};

static size_t on_body(char *p, size_t size, size_t n, void *ud)
{
        struct http_sink *hs = ud;

        (void)p;
        hs->body_seen += size * n;
        if (hs->body_seen > RP_HTTP_MAX_RESPONSE)
                return 0; /* aborts the transfer: we never need a body */
        return size * n;
}

static size_t on_header(char *p, size_t size, size_t n, void *ud)
{
        struct http_sink *hs = ud;
        size_t len = size * n;
        char val[64];

        if (len > 12 && len < 12 + sizeof(val) &&
            !strncasecmp(p, "retry-after:", 12)) {
                memcpy(val, p + 12, len - 12);
                val[len - 12] = '\0';
                hs->retry_after_ms = eb_replay_retry_after_ms(val);
        }
        return len;
}

static eb_replay_net_t classify(CURLcode cc)
{
        switch (cc) {
        case CURLE_OK:
                return EB_REPLAY_NET_OK;
        case CURLE_OPERATION_TIMEDOUT:
        case CURLE_COULDNT_CONNECT:
        case CURLE_COULDNT_RESOLVE_HOST:
        case CURLE_COULDNT_RESOLVE_PROXY:
        case CURLE_SEND_ERROR:
        case CURLE_RECV_ERROR:
        case CURLE_GOT_NOTHING:
        case CURLE_PARTIAL_FILE:
        case CURLE_SSL_CONNECT_ERROR:
        case CURLE_HTTP2:
        case CURLE_HTTP2_STREAM:
                return EB_REPLAY_NET_TRANSIENT;
        default:
                return EB_REPLAY_NET_FATAL;
        }
}

static int http_write(rp_sink_t *s, const struct rp_rec *r, char *errstr,
                      size_t sz)
{
        struct http_sink *hs = (struct http_sink *)s;
        const struct rp_opts *o = s->o;
        int attempt;

        curl_easy_setopt(hs->easy, CURLOPT_POSTFIELDS, r->evt->envelope);
        curl_easy_setopt(hs->easy, CURLOPT_POSTFIELDSIZE_LARGE,
                         (curl_off_t)r->evt->envelope_len);
        for (attempt = 1;; attempt++) {
                char what[CURL_ERROR_SIZE + 32];
                long status = 0;
                eb_replay_http_t verdict;
                CURLcode cc;
                int64_t wait;

                hs->errbuf[0] = '\0';
                hs->retry_after_ms = -1;
                hs->body_seen = 0;
                hs->posts++;
                cc = curl_easy_perform(hs->easy);
                if (cc == CURLE_OK)
                        curl_easy_getinfo(hs->easy, CURLINFO_RESPONSE_CODE,
                                          &status);
                verdict = eb_replay_http_verdict(classify(cc), status);
                if (cc == CURLE_WRITE_ERROR &&
                    hs->body_seen > RP_HTTP_MAX_RESPONSE) {
                        /* We cut an oversized response short; the status
                         * line had arrived. */
                        curl_easy_getinfo(hs->easy, CURLINFO_RESPONSE_CODE,
                                          &status);
                        verdict = eb_replay_http_verdict(EB_REPLAY_NET_OK,
                                                         status);
                }
                if (verdict == EB_REPLAY_HTTP_DONE)
                        return 0;
                if (status)
                        snprintf(what, sizeof(what), "HTTP %ld", status);
                else
                        snprintf(what, sizeof(what), "%s",
                                 hs->errbuf[0] ? hs->errbuf
                                               : curl_easy_strerror(cc));
                if (verdict == EB_REPLAY_HTTP_FAIL) {
                        snprintf(errstr, sz, "%s (not retried)", what);
                        return -EIO;
                }
                if (attempt >= o->retries) {
                        snprintf(errstr, sz, "%s after %d attempt%s", what,
                                 attempt, attempt == 1 ? "" : "s");
                        return -EIO;
                }
                wait = eb_replay_backoff_ms(attempt, o->backoff_ms,
                                            o->backoff_max_ms);
                /* +-25% jitter so parallel replays do not retry in step. */
                wait = wait * 3 / 4 +
                       (wait > 1 ? (int64_t)(rand_r(&hs->seed) % (wait / 2 + 1))
                                 : 0);
                if (hs->retry_after_ms > wait)
                        wait = hs->retry_after_ms < o->backoff_max_ms
                                       ? hs->retry_after_ms
                                       : o->backoff_max_ms;
                fprintf(stderr,
                        "evbridge-replay: warning: POST failed (%s); attempt "
                        "%d of %d, retrying in %lldms\n",
                        what, attempt, o->retries, (long long)wait);
                hs->retries++;
                rp_sleep_ms(wait);
                if (rp_stop_signal) {
                        snprintf(errstr, sz, "interrupted");
                        return -EINTR;
                }
        }
}

static int64_t http_flush(rp_sink_t *s, char *errstr, size_t sz)
{
        (void)s;
        (void)errstr;
        (void)sz;
        return 0;
}

static int64_t http_pending(rp_sink_t *s)
{
        (void)s;
        return 0;
}

static void http_summary(rp_sink_t *s)
{
        struct http_sink *hs = (struct http_sink *)s;

        fprintf(stderr, "evbridge-replay: http: %llu requests, %llu retried\n",
                (unsigned long long)hs->posts, (unsigned long long)hs->retries);
}

static void http_free(rp_sink_t *s)
{
        struct http_sink *hs = (struct http_sink *)s;

        if (!hs)
                return;
        if (hs->easy)
                curl_easy_cleanup(hs->easy);
        curl_slist_free_all(hs->hdrs);
        free(hs);
}

static const struct rp_sink_ops http_ops = {
        .name = "http",
        .sync = 1,
        .open = NULL,
        .write = http_write,
        .flush = http_flush,
        .pending = http_pending,
        .summary = http_summary,
        .free = http_free,
};

static int add_header(struct http_sink *hs, const char *h)
{
        struct curl_slist *n = curl_slist_append(hs->hdrs, h);

        if (!n)
                return -ENOMEM;
        hs->hdrs = n;
        return 0;
}

rp_sink_t *rp_sink_http_new(const struct rp_opts *o, char *errstr, size_t sz)
{
        struct http_sink *hs = eb_xcalloc(1, sizeof(*hs));
        char ua[64];
        size_t i;
        long connect_ms;

        hs->base.ops = &http_ops;
        hs->base.o = o;
        hs->seed = (unsigned)getpid() ^ (unsigned)eb_now_ms();
        hs->easy = curl_easy_init();
        if (!hs->easy)
                goto nomem;
        if (add_header(hs, "Content-Type: application/cloudevents+json") ||
            add_header(hs, "Expect:"))
                goto nomem;
        for (i = 0; i < o->nhttp_headers; i++)
                if (add_header(hs, o->http_headers[i]))
                        goto nomem;
        snprintf(ua, sizeof(ua), "evbridge-replay/%s", EB_VERSION);
        connect_ms =
                o->http_timeout_ms < 10000 ? (long)o->http_timeout_ms : 10000L;
        if (curl_easy_setopt(hs->easy, CURLOPT_URL, o->url) != CURLE_OK ||
            curl_easy_setopt(hs->easy, CURLOPT_PROTOCOLS_STR, "http,https") !=
                    CURLE_OK) {
                snprintf(errstr, sz, "--http: unusable URL");
                http_free(&hs->base);
                return NULL;
        }
        curl_easy_setopt(hs->easy, CURLOPT_HTTPHEADER, hs->hdrs);
        curl_easy_setopt(hs->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(hs->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(hs->easy, CURLOPT_TIMEOUT_MS,
                         (long)o->http_timeout_ms);
        curl_easy_setopt(hs->easy, CURLOPT_CONNECTTIMEOUT_MS, connect_ms);
        curl_easy_setopt(hs->easy, CURLOPT_ERRORBUFFER, hs->errbuf);
        curl_easy_setopt(hs->easy, CURLOPT_WRITEFUNCTION, on_body);
        curl_easy_setopt(hs->easy, CURLOPT_WRITEDATA, hs);
        curl_easy_setopt(hs->easy, CURLOPT_HEADERFUNCTION, on_header);
        curl_easy_setopt(hs->easy, CURLOPT_HEADERDATA, hs);
        curl_easy_setopt(hs->easy, CURLOPT_USERAGENT, ua);
        curl_easy_setopt(hs->easy, CURLOPT_FOLLOWLOCATION, 0L);
        return &hs->base;
nomem:
        snprintf(errstr, sz, "out of memory");
        http_free(&hs->base);
        return NULL;
}
