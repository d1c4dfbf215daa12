/*
 * webhook.c: the platforms' webhook senders, on the simulator's loop
 * through the curl multi socket API.
 *
 * For a live event that the account's settings select (webhook_share,
 * decided by a stateless hash so it does not disturb event content), one
 * delivery is scheduled after a random jitter, and sometimes a duplicate
 * (webhook_dup) with its own jitter, so deliveries arrive out of order like
 * the real ones. A delivery is retried on a non-2xx answer or a transport
 * error, with exponential back-off from webhook_retry_base up to
 * webhook_retry_max, at most webhook_attempts times.
 *
 * Bodies and signatures:
 *   Close  {"event": <event>, "subscription_id": "whsub_..."}, headers
 *          close-sig-timestamp (unix seconds) and close-sig-hash = lowercase
 *          hex HMAC-SHA256(key = hex-decoded signature key, msg = timestamp
 *          ASCII + raw body). The event is rendered at the first attempt,
 *          so a consolidated event is sent in its latest version (Close
 *          sends updates after a consolidation delay).
 *   Kota   the webhook event object (id, type, platform_id, data,
 *          created_at, object "event", api_version "1.0" | version "V2"),
 *          header x-kota-webhook-signature: t=<unix>,v1=<hex HMAC-SHA256
 *          (secret bytes, "<t>.<body>")>.
 *   Kommo  application/x-www-form-urlencoded nested keys
 *          (leads[status][0][id]=...&account[subdomain]=...), no signature;
 *          the path token is part of the URL.
 */
#include "sim.h"

#include <curl/curl.h>
#include <event2/event.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "eb_time.h"
#include "eb_util.h"

#define HOOK_MAX_RESPONSE (1024 * 1024)

struct hk_sock {
        curl_socket_t fd;
        struct event *ev;
        struct sim_hook *hk;
        struct hk_sock *next, *prev;
};

struct delivery {
        struct sim_hook *hk;
        struct sim_account *acct;
        struct sim_event *evt;
        struct sim_version *ver;
        char *url;
        char *body;
        size_t len;
        int attempt;
        struct event *timer;
        CURL *easy;
        struct curl_slist *hdrs;
        size_t got;
        char errbuf[CURL_ERROR_SIZE];
        struct delivery *next, *prev;
};

struct sim_hook {
        struct sim *sim;
        CURLM *multi;
        struct event *timer;
        struct delivery *list;
        struct hk_sock *socks;
        size_t pending;
};

static void check_done(struct sim_hook *hk);

/* ---- curl multi on libevent ---------------------------------------------- */

static void on_sock(evutil_socket_t fd, short what, void *arg)
{
        struct sim_hook *hk = arg;
        int action = 0, running = 0;

        if (what & EV_READ)
                action |= CURL_CSELECT_IN;
        if (what & EV_WRITE)
                action |= CURL_CSELECT_OUT;
        curl_multi_socket_action(hk->multi, fd, action, &running);
        check_done(hk);
        if (running <= 0)
                evtimer_del(hk->timer);
}

static int sock_cb(CURL *easy, curl_socket_t s, int what, void *userp,
                   void *socketp)
{
        struct sim_hook *hk = userp;
        struct hk_sock *hs = socketp;
        short kind;

        (void)easy;
        if (what == CURL_POLL_REMOVE) {
                if (hs) {
                        event_free(hs->ev);
                        if (hs->prev)
                                hs->prev->next = hs->next;
                        else
                                hk->socks = hs->next;
                        if (hs->next)
                                hs->next->prev = hs->prev;
                        free(hs);
                        curl_multi_assign(hk->multi, s, NULL);
                }
                return 0;
        }
        kind = (short)(((what & CURL_POLL_IN) ? EV_READ : 0) |
                       ((what & CURL_POLL_OUT) ? EV_WRITE : 0) | EV_PERSIST);
        if (!hs) {
                hs = eb_xcalloc(1, sizeof(*hs));
                hs->fd = s;
                hs->hk = hk;
                hs->next = hk->socks;
                if (hs->next)
                        hs->next->prev = hs;
                hk->socks = hs;
                curl_multi_assign(hk->multi, s, hs);
        } else {
                event_free(hs->ev);
        }
        hs->ev = event_new(hk->sim->base, s, kind, on_sock, hk);
        event_add(hs->ev, NULL);
        return 0;
}

static void on_timeout(evutil_socket_t fd, short what, void *arg)
{
        struct sim_hook *hk = arg;
        int running = 0;

        (void)fd;
        (void)what;
        curl_multi_socket_action(hk->multi, CURL_SOCKET_TIMEOUT, 0, &running);
        check_done(hk);
}

static int timer_cb(CURLM *multi, long timeout_ms, void *userp)
{
        struct sim_hook *hk = userp;
        struct timeval tv;

        (void)multi;
        if (timeout_ms < 0) {
                evtimer_del(hk->timer);
                return 0;
        }
        tv.tv_sec = timeout_ms / 1000;
        tv.tv_usec = (timeout_ms % 1000) * 1000;
        evtimer_add(hk->timer, &tv);
        return 0;
}

/* ---- deliveries ------------------------------------------------------------
 */

static void delivery_free(struct delivery *d)
{
        struct sim_hook *hk = d->hk;

        if (d->prev)
                d->prev->next = d->next;
        else
                hk->list = d->next;
        if (d->next)
                d->next->prev = d->prev;
        if (d->easy) {
                curl_multi_remove_handle(hk->multi, d->easy);
                curl_easy_cleanup(d->easy);
        }
        curl_slist_free_all(d->hdrs);
        if (d->timer)
                event_free(d->timer);
        free(d->body);
        free(d->url);
        hk->pending--;
        d->acct->st.wh_pending--;
        free(d);
}

static size_t discard_cb(char *p, size_t sz, size_t n, void *userp)
{
        struct delivery *d = userp;

        (void)p;
        d->got += sz * n;
        if (d->got > HOOK_MAX_RESPONSE)
                return 0;
        return sz * n;
}

static int build_body(struct delivery *d)
{
        struct sim_account *a = d->acct;
        struct sim_event *evt = d->evt;

        d->ver = evt->cur;
        switch (a->prov) {
        case SIM_CLOSE:
                d->body = eb_xasprintf("{\"event\":%s,\"subscription_id\":"
                                       "\"%s\"}",
                                       evt->cur->json, a->sub_id);
                d->len = strlen(d->body);
                return 0;
        case SIM_KOTA:
                d->body = sim_kota_webhook_body(evt, a->set.kota_v2, &d->len);
                return d->body ? 0 : -1;
        default:
                if (!evt->hook)
                        return -1;
                d->body = eb_xstrndup(evt->hook, evt->hook_len);
                d->len = evt->hook_len;
                return 0;
        }
}

static void add_sig_headers(struct delivery *d)
{
        struct sim_account *a = d->acct;
        const char *secret = sim_account_secret(a);
        unsigned char key[256], mac[32];
        char hex[65], hdr[160], ts[32];
        char *msg;
        int klen;
        long long now = (long long)time(NULL);

        snprintf(ts, sizeof(ts), "%lld", now);
        if (a->prov == SIM_CLOSE) {
                klen = eb_hex_decode(secret, key, sizeof(key));
                if (klen < 0) {
                        /* not hex: use the bytes (a misconfiguration the
                         * receiver will reject, which may be the point) */
                        klen = (int)strnlen(secret, sizeof(key));
                        memcpy(key, secret, (size_t)klen);
                }
                msg = eb_xmalloc(strlen(ts) + d->len + 1);
                memcpy(msg, ts, strlen(ts));
                memcpy(msg + strlen(ts), d->body, d->len);
                if (eb_hmac_sha256(key, (size_t)klen, msg, strlen(ts) + d->len,
                                   mac) < 0)
                        memset(mac, 0, sizeof(mac));
                free(msg);
                eb_hex_encode(mac, sizeof(mac), hex);
                snprintf(hdr, sizeof(hdr), "close-sig-hash: %s", hex);
                d->hdrs = curl_slist_append(d->hdrs, hdr);
                snprintf(hdr, sizeof(hdr), "close-sig-timestamp: %s", ts);
                d->hdrs = curl_slist_append(d->hdrs, hdr);
        } else if (a->prov == SIM_KOTA) {
                size_t tl = strlen(ts);
                msg = eb_xmalloc(tl + 1 + d->len + 1);
                memcpy(msg, ts, tl);
                msg[tl] = '.';
                memcpy(msg + tl + 1, d->body, d->len);
                if (eb_hmac_sha256(secret, strlen(secret), msg, tl + 1 + d->len,
                                   mac) < 0)
                        memset(mac, 0, sizeof(mac));
                free(msg);
                eb_hex_encode(mac, sizeof(mac), hex);
                snprintf(hdr, sizeof(hdr),
                         "x-kota-webhook-signature: t=%s,v1=%s", ts, hex);
                d->hdrs = curl_slist_append(d->hdrs, hdr);
        }
}

static void on_attempt(evutil_socket_t fd, short what, void *arg)
{
        struct delivery *d = arg;
        struct sim_hook *hk = d->hk;
        struct sim_account *a = d->acct;

        (void)fd;
        (void)what;
        if (!d->body && build_body(d) < 0) {
                /* nothing to send in this version (e.g. Kota v1 and a
                 * v2-only type): drop quietly */
                delivery_free(d);
                return;
        }
        d->attempt++;
        a->st.wh_attempts++;
        if (d->attempt > 1)
                a->st.wh_retries++;
        curl_slist_free_all(d->hdrs);
        d->hdrs = NULL;
        d->hdrs = curl_slist_append(
                d->hdrs, a->prov == SIM_KOMMO
                                 ? "Content-Type: "
                                   "application/x-www-form-urlencoded"
                                 : "Content-Type: application/json");
        d->hdrs = curl_slist_append(d->hdrs, "Expect:");
        add_sig_headers(d);
        d->got = 0;
        d->errbuf[0] = '\0';
        d->easy = curl_easy_init();
        if (!d->easy) {
                eb_error(SIM_MOD, "webhook: curl_easy_init failed");
                a->st.wh_failed++;
                delivery_free(d);
                return;
        }
        curl_easy_setopt(d->easy, CURLOPT_URL, d->url);
        curl_easy_setopt(d->easy, CURLOPT_PROTOCOLS_STR, "http,https");
        curl_easy_setopt(d->easy, CURLOPT_POST, 1L);
        curl_easy_setopt(d->easy, CURLOPT_POSTFIELDS, d->body);
        curl_easy_setopt(d->easy, CURLOPT_POSTFIELDSIZE, (long)d->len);
        curl_easy_setopt(d->easy, CURLOPT_HTTPHEADER, d->hdrs);
        curl_easy_setopt(d->easy, CURLOPT_USERAGENT, "evbridge-sim webhook");
        curl_easy_setopt(d->easy, CURLOPT_TIMEOUT_MS,
                         (long)a->set.webhook_timeout_ms);
        curl_easy_setopt(d->easy, CURLOPT_CONNECTTIMEOUT_MS,
                         (long)a->set.webhook_timeout_ms);
        curl_easy_setopt(d->easy, CURLOPT_NOSIGNAL, 1L);
        curl_easy_setopt(d->easy, CURLOPT_PRIVATE, d);
        curl_easy_setopt(d->easy, CURLOPT_ERRORBUFFER, d->errbuf);
        curl_easy_setopt(d->easy, CURLOPT_WRITEFUNCTION, discard_cb);
        curl_easy_setopt(d->easy, CURLOPT_WRITEDATA, d);
        if (curl_multi_add_handle(hk->multi, d->easy) != CURLM_OK) {
                eb_error(SIM_MOD, "webhook: curl_multi_add_handle failed");
                curl_easy_cleanup(d->easy);
                d->easy = NULL;
                a->st.wh_failed++;
                delivery_free(d);
        }
}

static void arm(struct delivery *d, int64_t delay_ms)
{
        struct timeval tv;

        tv.tv_sec = (time_t)(delay_ms / 1000);
        tv.tv_usec = (suseconds_t)((delay_ms % 1000) * 1000);
        evtimer_add(d->timer, &tv);
}

static void attempt_done(struct delivery *d, CURLcode res, long code)
{
        struct sim_hook *hk = d->hk;
        struct sim_account *a = d->acct;
        curl_off_t sent = 0;

        /* The whole body went out: the receiver may have read and
         * published this version even when no answer came back (it died
         * after its commit), so it counts as served. "served" is an upper
         * bound of what receivers saw, as for list responses. */
        if (curl_easy_getinfo(d->easy, CURLINFO_SIZE_UPLOAD_T, &sent) !=
            CURLE_OK)
                sent = 0;
        curl_multi_remove_handle(hk->multi, d->easy);
        curl_easy_cleanup(d->easy);
        d->easy = NULL;
        if (d->ver && ((res == CURLE_OK && code > 0) ||
                       (d->len > 0 && sent >= (curl_off_t)d->len)))
                d->ver->served = 1;
        if (res == CURLE_OK && code >= 200 && code < 300) {
                a->st.wh_delivered++;
                eb_debug(SIM_MOD, "webhook %s event=%s attempt=%d: %ld",
                         a->name, d->evt->id, d->attempt, code);
                delivery_free(d);
                return;
        }
        if (d->attempt >= a->set.webhook_attempts) {
                a->st.wh_failed++;
                eb_warn(SIM_MOD,
                        "webhook %s event=%s: giving up after %d attempts "
                        "(last: %s %ld)",
                        a->name, d->evt->id, d->attempt,
                        res == CURLE_OK ? "HTTP" : curl_easy_strerror(res),
                        code);
                delivery_free(d);
                return;
        }
        {
                int64_t delay = a->set.webhook_retry_base_ms;
                int i;
                double j;

                for (i = 1;
                     i < d->attempt && delay < a->set.webhook_retry_max_ms; i++)
                        delay *= 2;
                if (delay > a->set.webhook_retry_max_ms)
                        delay = a->set.webhook_retry_max_ms;
                /* +-20% jitter, deterministic per delivery and attempt */
                j = 0.8 + 0.4 * sim_hash_unit(hk->sim->seed, d->acct->name,
                                              d->evt->seq * 131 +
                                                      (uint64_t)d->attempt);
                delay = (int64_t)((double)delay * j);
                eb_debug(SIM_MOD,
                         "webhook %s event=%s attempt=%d failed (%s %ld); "
                         "retry in %lld ms",
                         a->name, d->evt->id, d->attempt,
                         res == CURLE_OK ? "HTTP" : curl_easy_strerror(res),
                         code, (long long)delay);
                arm(d, delay < 1 ? 1 : delay);
        }
}

static void check_done(struct sim_hook *hk)
{
        CURLMsg *msg;
        int left = 0;

        while ((msg = curl_multi_info_read(hk->multi, &left))) {
                struct delivery *d = NULL;
                CURLcode res;
                long code = 0;

                if (msg->msg != CURLMSG_DONE)
                        continue;
                res = msg->data.result;
                curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &d);
                curl_easy_getinfo(msg->easy_handle, CURLINFO_RESPONSE_CODE,
                                  &code);
                if (d)
                        attempt_done(d, res, code);
        }
}

static void schedule(struct sim_hook *hk, struct sim_event *evt,
                     const char *url, int64_t delay_ms)
{
        struct delivery *d = eb_xcalloc(1, sizeof(*d));

        d->hk = hk;
        d->acct = evt->acct;
        d->evt = evt;
        d->url = eb_xstrdup(url);
        d->timer = evtimer_new(hk->sim->base, on_attempt, d);
        d->next = hk->list;
        if (d->next)
                d->next->prev = d;
        hk->list = d;
        hk->pending++;
        d->acct->st.wh_pending++;
        d->acct->st.wh_scheduled++;
        arm(d, delay_ms);
}

void sim_hook_event(struct sim_hook *hk, struct sim_event *evt)
{
        struct sim_account *a = evt->acct;
        uint64_t seed = hk->sim->seed;
        char label[96];
        char *url;
        int64_t jitter = a->set.webhook_jitter_ms;
        /* a folded (consolidated) Close event gets its own decision */
        uint64_t key = evt->seq * 1000003ULL + (uint64_t)a->nvers;

        if (!a->set.webhook_url || a->set.webhook_share <= 0)
                return;
        if (a->prov == SIM_KOMMO && !evt->hook)
                return;
        if (a->prov == SIM_KOTA && !a->set.kota_v2 && !evt->kota_v1)
                return;
        snprintf(label, sizeof(label), "share:%s", a->name);
        if (sim_hash_unit(seed, label, key) >= a->set.webhook_share)
                return;
        url = sim_webhook_url(a);
        snprintf(label, sizeof(label), "jitter:%s", a->name);
        schedule(hk, evt, url,
                 (int64_t)(sim_hash_unit(seed, label, key) * (double)jitter));
        snprintf(label, sizeof(label), "dup:%s", a->name);
        if (sim_hash_unit(seed, label, key) < a->set.webhook_dup) {
                snprintf(label, sizeof(label), "jitter2:%s", a->name);
                a->st.wh_dups++;
                schedule(hk, evt, url,
                         (int64_t)(sim_hash_unit(seed, label, key) *
                                   (double)jitter) +
                                 1);
        }
        free(url);
}

size_t sim_hook_pending(const struct sim_hook *hk)
{
        return hk->pending;
}

struct sim_hook *sim_hook_new(struct sim *sim)
{
        struct sim_hook *hk = eb_xcalloc(1, sizeof(*hk));

        hk->sim = sim;
        hk->multi = curl_multi_init();
        if (!hk->multi) {
                free(hk);
                return NULL;
        }
        hk->timer = evtimer_new(sim->base, on_timeout, hk);
        curl_multi_setopt(hk->multi, CURLMOPT_SOCKETFUNCTION, sock_cb);
        curl_multi_setopt(hk->multi, CURLMOPT_SOCKETDATA, hk);
        curl_multi_setopt(hk->multi, CURLMOPT_TIMERFUNCTION, timer_cb);
        curl_multi_setopt(hk->multi, CURLMOPT_TIMERDATA, hk);
        return hk;
}

void sim_hook_free(struct sim_hook *hk)
{
        if (!hk)
                return;
        if (hk->pending)
                eb_info(SIM_MOD, "webhook: dropping %zu pending deliveries",
                        hk->pending);
        while (hk->list)
                delivery_free(hk->list);
        /* the event base is still alive: curl may call sock_cb here */
        curl_multi_cleanup(hk->multi);
        while (hk->socks) {
                struct hk_sock *hs = hk->socks;
                hk->socks = hs->next;
                event_free(hs->ev);
                free(hs);
        }
        event_free(hk->timer);
        free(hk);
}
